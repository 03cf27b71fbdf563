"""A tenant's catalog: points of interest and content items, validated.

A catalog is plain, immutable data: the importers (``cloud.recommend.importers``)
read files into records, :func:`poi_from_record` and :func:`content_from_record`
check each field, and :meth:`Catalog.build` checks the whole (unique ids). Every
problem is a ``FieldProblem`` naming the field; the importer adds the file and
the line or feature, so the operator is told exactly where to look.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TypeVar

from cloud.recommend.errors import CatalogError
from cloud.recommend.hours import ALWAYS_OPEN, OpeningHours, parse_hours

__all__ = [
    "SERVICE_KINDS",
    "Catalog",
    "Connector",
    "ContentItem",
    "ContentKind",
    "FieldProblem",
    "Poi",
    "PoiKind",
    "content_from_record",
    "poi_from_record",
]

_MAX_TEXT = 500
_E = TypeVar("_E", bound=StrEnum)


class PoiKind(StrEnum):
    CHARGING = "charging"
    FUEL = "fuel"
    DEALER = "dealer"
    SERVICE_CENTRE = "service_centre"
    PARKING = "parking"
    OTHER = "other"


#: Where a fault or a due service can be seen to.
SERVICE_KINDS = frozenset({PoiKind.DEALER, PoiKind.SERVICE_CENTRE})


class Connector(StrEnum):
    CCS = "ccs"
    CHADEMO = "chademo"
    TYPE2 = "type2"
    NACS = "nacs"


class ContentKind(StrEnum):
    RECALL = "recall"
    SERVICE_OFFER = "service_offer"
    ARTICLE = "article"


class FieldProblem(ValueError):
    """One field of one record is wrong; the importer says which record."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Poi:
    """A place worth suggesting. ``price`` is per kWh or litre, in the tenant's currency."""

    id: str
    kind: PoiKind
    name: str
    lat: float
    lon: float
    brand: str | None = None
    connectors: frozenset[Connector] = frozenset()
    power_kw: float | None = None
    price: float | None = None
    hours: OpeningHours = ALWAYS_OPEN
    address: str | None = None


@dataclass(frozen=True, slots=True)
class ContentItem:
    """A recall notice, service offer or article. Empty ``models``: every model."""

    id: str
    kind: ContentKind
    title: str
    summary: str
    url: str | None = None
    models: frozenset[str] = frozenset()
    #: Fault-code prefixes the item is about (an article on a P03xx misfire, say).
    fault_prefixes: tuple[str, ...] = ()
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """One tenant's points of interest and content items, ids unique within each."""

    pois: tuple[Poi, ...]
    content: tuple[ContentItem, ...]

    @classmethod
    def build(
        cls, pois: Iterable[Poi], content: Iterable[ContentItem], *, source: str = ""
    ) -> Catalog:
        pois, content = tuple(pois), tuple(content)
        for what, ids in (
            ("point of interest", [p.id for p in pois]),
            ("content item", [c.id for c in content]),
        ):
            seen: set[str] = set()
            for item_id in ids:
                if item_id in seen:
                    raise CatalogError(
                        f"{what} id {item_id!r} appears twice", source=source, field="id"
                    )
                seen.add(item_id)
        return cls(pois, content)


# --------------------------------------------------------------------- records
# A record is what a file holds for one entry: strings (CSV) or JSON values
# (GeoJSON properties). Empty strings and nulls mean "not given".


def poi_from_record(record: Mapping[str, object], lat: object, lon: object) -> Poi:
    """A validated point of interest; raises ``FieldProblem``."""
    kind = _enum(PoiKind, record.get("kind"), "kind")
    connectors = frozenset(
        _enum(Connector, piece, "connectors")
        for piece in _list(record.get("connectors"), "connectors")
    )
    if kind is PoiKind.CHARGING and not connectors:
        raise FieldProblem("connectors", "a charging station needs at least one connector")
    if kind is not PoiKind.CHARGING and connectors:
        raise FieldProblem("connectors", f"only charging stations have connectors, not {kind}")
    hours_text = _text(record.get("opening_hours"), "opening_hours")
    try:
        hours = parse_hours(hours_text) if hours_text else ALWAYS_OPEN
    except ValueError as exc:
        raise FieldProblem("opening_hours", str(exc)) from None
    return Poi(
        id=_required_text(record.get("id"), "id"),
        kind=kind,
        name=_required_text(record.get("name"), "name"),
        lat=_required_number(lat, "lat", low=-90, high=90),
        lon=_required_number(lon, "lon", low=-180, high=180),
        brand=_text(record.get("brand"), "brand"),
        connectors=connectors,
        power_kw=_number(record.get("power_kw"), "power_kw", low=0.1, high=2000),
        price=_number(record.get("price"), "price", low=0, high=1000),
        hours=hours,
        address=_text(record.get("address"), "address"),
    )


def content_from_record(record: Mapping[str, object]) -> ContentItem:
    """A validated content item; raises ``FieldProblem``."""
    kind = _enum(ContentKind, record.get("kind"), "kind")
    valid_from = _date(record.get("valid_from"), "valid_from")
    valid_until = _date(record.get("valid_until"), "valid_until")
    if valid_from and valid_until and valid_until < valid_from:
        raise FieldProblem("valid_until", f"{valid_until} is before valid_from {valid_from}")
    url = _text(record.get("url"), "url")
    faults = _list(record.get("fault_codes"), "fault_codes")
    if url is not None and not url.startswith(("https://", "http://")):
        raise FieldProblem("url", f"must start with https:// or http://, got {url!r}")
    return ContentItem(
        id=_required_text(record.get("id"), "id"),
        kind=kind,
        title=_required_text(record.get("title"), "title"),
        summary=_text(record.get("summary"), "summary") or "",
        url=url,
        models=frozenset(_list(record.get("models"), "models")),
        fault_prefixes=tuple(sorted(code.upper() for code in faults)),
        valid_from=valid_from,
        valid_until=valid_until,
    )


def _given(value: object) -> bool:
    return value is not None and value != ""


def _text(value: object, field: str) -> str | None:
    if not _given(value):
        return None
    if not isinstance(value, str):
        raise FieldProblem(field, f"must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > _MAX_TEXT:
        raise FieldProblem(field, f"is longer than {_MAX_TEXT} characters")
    return value or None


def _required_text(value: object, field: str) -> str:
    text = _text(value, field)
    if text is None:
        raise FieldProblem(field, "is required")
    return text


def _required_number(value: object, field: str, *, low: float, high: float) -> float:
    number = _number(value, field, low=low, high=high)
    if number is None:
        raise FieldProblem(field, "is required")
    return number


def _number(value: object, field: str, *, low: float, high: float) -> float | None:
    if not _given(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldProblem(field, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise FieldProblem(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise FieldProblem(field, f"must be between {low:g} and {high:g}, got {value!r}")
    return number


def _enum(kind: type[_E], value: object, field: str) -> _E:
    if not _given(value):
        raise FieldProblem(field, "is required")
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise FieldProblem(field, f"{value!r} is not one of: {allowed}") from None


def _list(value: object, field: str) -> list[str]:
    """A list from JSON, or from CSV text separated by ``;``."""
    if not _given(value):
        return []
    if isinstance(value, str):
        return [piece.strip() for piece in value.split(";") if piece.strip()]
    if isinstance(value, list) and all(isinstance(piece, str) for piece in value):
        return [piece.strip() for piece in value if piece.strip()]
    raise FieldProblem(field, f"must be a list of text or text separated by ';', got {value!r}")


def _date(value: object, field: str) -> date | None:
    text = _text(value, field)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FieldProblem(field, f"must be a date like 2026-12-31, got {text!r}") from None
