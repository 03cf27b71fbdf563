"""A hand-made catalog with known answers: every place north of HOME at a chosen distance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cloud.recommend.catalog import Catalog, Connector, ContentItem, ContentKind, Poi, PoiKind
from cloud.recommend.hours import parse_hours
from cloud.recommend.spatial import EARTH_RADIUS_KM

HOME = (56.10, 10.19)
BRAND = "Acme"
#: A Monday afternoon in Aarhus.
MONDAY_2PM = datetime(2026, 12, 7, 14, 0, tzinfo=timezone(timedelta(hours=1)))
_KM_PER_DEG = 3.141592653589793 * EARTH_RADIUS_KM / 180


def north(km: float) -> tuple[float, float]:
    return HOME[0] + km / _KM_PER_DEG, HOME[1]


def poi(id: str, kind: PoiKind, km: float, **fields: object) -> Poi:
    lat, lon = north(km)
    return Poi(id=id, kind=kind, name=id, lat=lat, lon=lon, **fields)  # type: ignore[arg-type]


CCS = frozenset({Connector.CCS})
TYPE2 = frozenset({Connector.TYPE2})

POIS = (
    poi("chg-near-ccs", PoiKind.CHARGING, 2.0, connectors=CCS | TYPE2, power_kw=150.0),
    poi("chg-near-type2", PoiKind.CHARGING, 1.0, connectors=TYPE2, power_kw=22.0),
    poi(
        "chg-mid-chademo",
        PoiKind.CHARGING,
        5.0,
        connectors=frozenset({Connector.CHADEMO}),
        power_kw=50.0,
    ),
    poi(
        "chg-closed-ccs",
        PoiKind.CHARGING,
        3.0,
        connectors=CCS,
        power_kw=150.0,
        hours=parse_hours("Mo-Fr 08:00-09:00"),
    ),
    poi("chg-mid-ccs", PoiKind.CHARGING, 15.0, connectors=CCS, power_kw=50.0),
    poi("chg-far-ccs", PoiKind.CHARGING, 20.0, connectors=CCS, power_kw=350.0),
    poi("fuel-near", PoiKind.FUEL, 1.5, price=13.2),
    poi("fuel-mid", PoiKind.FUEL, 6.0, price=12.9),
    poi("svc-indep", PoiKind.SERVICE_CENTRE, 2.0, brand="Garage Nord"),
    poi("svc-brand", PoiKind.SERVICE_CENTRE, 8.0, brand=BRAND),
    poi("dealer-brand", PoiKind.DEALER, 12.0, brand=BRAND),
    poi("park-near", PoiKind.PARKING, 0.5),
)

CONTENT = (
    ContentItem(
        "recall-ev", ContentKind.RECALL, "Battery connector recall", "", models=frozenset({"Volt"})
    ),
    ContentItem("offer-service", ContentKind.SERVICE_OFFER, "Service offer", ""),
    ContentItem("article-misfire", ContentKind.ARTICLE, "Misfires", "", fault_prefixes=("P030",)),
    ContentItem(
        "article-old",
        ContentKind.ARTICLE,
        "Expired",
        "",
        valid_until=MONDAY_2PM.date() - timedelta(days=1),
    ),
)

CATALOG = Catalog.build(POIS, CONTENT)
