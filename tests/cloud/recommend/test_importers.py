"""Catalog files: the sample loads, and every bad entry is named by file, place and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.recommend.catalog import Connector, PoiKind
from cloud.recommend.errors import CatalogError
from cloud.recommend.importers import load_catalog, read_content_csv, read_geojson, read_poi_csv
from cloud.recommend.sample import SAMPLE_BRAND, sample_catalog_dir


def test_the_sample_catalog_loads_around_the_demo_drive() -> None:
    catalog = load_catalog(sample_catalog_dir())
    kinds = {kind: sum(p.kind is kind for p in catalog.pois) for kind in PoiKind}
    assert kinds[PoiKind.CHARGING] >= 20
    assert kinds[PoiKind.FUEL] >= 10
    assert sum(p.brand == SAMPLE_BRAND for p in catalog.pois) in (2, 3)
    assert {c for p in catalog.pois for c in p.connectors} >= {
        Connector.CCS,
        Connector.CHADEMO,
        Connector.TYPE2,
    }
    assert all(55.9 < p.lat < 56.3 and 9.9 < p.lon < 10.3 for p in catalog.pois)
    assert {item.kind.value for item in catalog.content} >= {"recall", "service_offer"}


def feature(**props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [10.2, 56.1]},
        "properties": {"id": "x", "kind": "fuel", "name": "X", **props},
    }


def collection(*features: object) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


@pytest.mark.parametrize(
    ("text", "where", "field", "says"),
    [
        ("{", "line 1 column 2", "", "not JSON"),
        (json.dumps({"type": "Feature"}), "", "type", "FeatureCollection"),
        (
            collection(feature(), feature(id="y", kind="spaceport")),
            "feature 2 (id 'y')",
            "kind",
            "'spaceport' is not one of",
        ),
        (
            collection(feature(kind="charging")),
            "feature 1 (id 'x')",
            "connectors",
            "at least one connector",
        ),
        (
            collection(feature(kind="charging", connectors=["ccs", "scart"])),
            "feature 1",
            "connectors",
            "'scart'",
        ),
        (collection(feature(power_kw="lots")), "feature 1", "power_kw", "must be a number"),
        (collection(feature(opening_hours="always")), "feature 1", "opening_hours", "days"),
        (
            collection(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [10.2, 95]},
                    "properties": {"id": "x", "kind": "fuel", "name": "X"},
                }
            ),
            "feature 1",
            "lat",
            "between -90 and 90",
        ),
        (
            collection({"type": "Feature", "geometry": None, "properties": {}}),
            "feature 1",
            "geometry",
            "Point",
        ),
    ],
)
def test_geojson_errors_name_the_feature_and_field(
    text: str, where: str, field: str, says: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        read_geojson("pois.geojson", text)
    error = caught.value
    assert error.source == "pois.geojson"
    assert error.where.startswith(where)
    assert error.field == field
    assert says in str(error)
    assert str(error).startswith("pois.geojson")


@pytest.mark.parametrize(
    ("text", "where", "field", "says"),
    [
        ("id,kind,name\n", "line 1", "", "lacks column(s) lat, lon"),
        (
            "id,kind,name,lat,lon\na,dealer,A,56.1,10.2\nb,dealer,,56.1,10.2\n",
            "line 3",
            "name",
            "is required",
        ),
        ("id,kind,name,lat,lon\na,dealer,A,56.1,10.2,extra\n", "line 2", "", "more cells"),
        ("id,kind,name,lat,lon\na,dealer,A,north,10.2\n", "line 2", "lat", "must be a number"),
    ],
)
def test_csv_errors_name_the_line_and_field(text: str, where: str, field: str, says: str) -> None:
    with pytest.raises(CatalogError) as caught:
        read_poi_csv("dealers.csv", text)
    assert (caught.value.where, caught.value.field) == (where, field)
    assert says in str(caught.value)
    assert "dealers.csv" in str(caught.value)


def test_content_csv_checks_dates_and_urls() -> None:
    header = "id,kind,title,url,valid_from,valid_until\n"
    with pytest.raises(CatalogError, match="line 2: field 'valid_until'"):
        read_content_csv("content.csv", header + "a,recall,T,,2026-02-01,2026-01-01\n")
    with pytest.raises(CatalogError, match="field 'url'"):
        read_content_csv("content.csv", header + "a,article,T,ftp://x,,\n")
    [item] = read_content_csv("content.csv", header + "a,article,T,https://x.invalid,,\n")
    assert item.url == "https://x.invalid"


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.geojson").write_text(collection(feature()))
    (tmp_path / "b.csv").write_text("id,kind,name,lat,lon\nx,parking,P,56.1,10.2\n")
    with pytest.raises(CatalogError, match="'x' appears twice"):
        load_catalog(tmp_path)


def test_a_missing_directory_or_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope")
    (tmp_path / "bad.csv").write_bytes(b"id,kind,name,lat,lon\n\xff\n")
    with pytest.raises(CatalogError, match=r"bad\.csv: not UTF-8"):
        load_catalog(tmp_path)
