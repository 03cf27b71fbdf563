"""Catalog files in: GeoJSON and CSV, each entry validated, every error placed.

A tenant's catalog directory holds:

- ``*.geojson``: a FeatureCollection of Point features, one point of interest
  each, its fields in ``properties`` (``id``, ``kind``, ``name``, ``brand``,
  ``connectors``, ``power_kw``, ``price``, ``opening_hours``, ``address``);
- ``content*.csv``: content items (``id``, ``kind``, ``title``, ``summary``,
  ``url``, ``models``, ``fault_codes``, ``valid_from``, ``valid_until``);
- any other ``*.csv``: points of interest with ``lat`` and ``lon`` columns, e.g.
  the dealers and service centres exported from the CRM's dealer records.

Lists in CSV cells are separated by ``;``. The first error stops the load and
names the file, the line or feature, and the field; a catalog is used whole
or not at all. Files are read in name order, so the result is deterministic.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from cloud.recommend.catalog import (
    Catalog,
    ContentItem,
    FieldProblem,
    Poi,
    content_from_record,
    poi_from_record,
)
from cloud.recommend.errors import CatalogError

__all__ = ["MAX_FILE_BYTES", "load_catalog", "read_content_csv", "read_geojson", "read_poi_csv"]

#: Catalog files larger than this are refused rather than read into memory.
MAX_FILE_BYTES = 200 * 1024 * 1024
_POI_COLUMNS = {"id", "kind", "name", "lat", "lon"}
_CONTENT_COLUMNS = {"id", "kind", "title"}
_T = TypeVar("_T")


def load_catalog(directory: Path) -> Catalog:
    """Every catalog file in ``directory``; raises ``CatalogError``."""
    if not directory.is_dir():
        raise CatalogError("the catalog directory does not exist", source=str(directory))
    pois: list[Poi] = []
    content: list[ContentItem] = []
    for path in sorted(directory.iterdir()):
        if path.suffix == ".geojson":
            pois.extend(read_geojson(path.name, _read(path)))
        elif path.suffix == ".csv" and path.name.startswith("content"):
            content.extend(read_content_csv(path.name, _read(path)))
        elif path.suffix == ".csv":
            pois.extend(read_poi_csv(path.name, _read(path)))
    return Catalog.build(pois, content, source=str(directory))


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CatalogError(f"larger than {MAX_FILE_BYTES} bytes", source=path.name)
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=path.name
        ) from exc
    except OSError as exc:
        raise CatalogError(f"cannot be read: {exc.strerror}", source=path.name) from exc


def read_geojson(source: str, text: str) -> list[Poi]:
    """Points of interest from a GeoJSON FeatureCollection of Points."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"not JSON: {exc.msg}", source=source, where=f"line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise CatalogError("must be a GeoJSON FeatureCollection", source=source, field="type")
    features = document.get("features")
    if not isinstance(features, list):
        raise CatalogError("must be a list of features", source=source, field="features")
    pois: list[Poi] = []
    for number, feature in enumerate(features, start=1):
        where = f"feature {number}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise CatalogError("is not a GeoJSON Feature", source=source, where=where, field="type")
        props = feature.get("properties")
        if not isinstance(props, dict):
            raise CatalogError("must be an object", source=source, where=where, field="properties")
        if isinstance(props.get("id"), str):
            where += f" (id {props['id']!r})"
        geometry = feature.get("geometry")
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if (
            not isinstance(geometry, dict)
            or geometry.get("type") != "Point"
            or not isinstance(coords, list)
            or len(coords) not in (2, 3)
        ):
            raise CatalogError(
                "must be a Point with [longitude, latitude]",
                source=source,
                where=where,
                field="geometry",
            )
        try:
            pois.append(poi_from_record(props, lat=coords[1], lon=coords[0]))
        except FieldProblem as exc:
            raise CatalogError(exc.message, source=source, where=where, field=exc.field) from exc
    return pois


def read_poi_csv(source: str, text: str) -> list[Poi]:
    """Points of interest from CSV with a header and ``lat``/``lon`` columns."""
    return _from_csv(
        source,
        text,
        _POI_COLUMNS,
        lambda row: poi_from_record(row, lat=row.get("lat"), lon=row.get("lon")),
    )


def read_content_csv(source: str, text: str) -> list[ContentItem]:
    """Content items from CSV with a header."""
    return _from_csv(source, text, _CONTENT_COLUMNS, content_from_record)


def _from_csv(
    source: str, text: str, required: set[str], make: Callable[[dict[str, str]], _T]
) -> list[_T]:
    entries: list[_T] = []
    for where, row in _rows(source, text, required):
        try:
            entries.append(make(row))
        except FieldProblem as exc:
            raise CatalogError(exc.message, source=source, where=where, field=exc.field) from exc
    return entries


def _rows(source: str, text: str, required: set[str]) -> Iterator[tuple[str, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = set(reader.fieldnames or ())
        missing = sorted(required - header)
        if missing:
            raise CatalogError(
                f"the header lacks column(s) {', '.join(missing)}", source=source, where="line 1"
            )
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                raise CatalogError(
                    "more cells than the header has columns", source=source, where=where
                )
            yield where, {key: value for key, value in row.items() if value is not None}
    except csv.Error as exc:
        raise CatalogError(
            f"not valid CSV: {exc}", source=source, where=f"line {reader.line_num}"
        ) from exc
