"""The vehicle's context a ranking starts from, and the privacy rules applied to it.

- **Position**: exact only when the owner consented to location; otherwise it is
  snapped to the centre of a ``COARSE_CELL_DEG`` cell (0.1°: about 11 km north
  to south, 6 km east to west at 56° N) before anything else sees it, so every
  exact position inside one cell gives the same answer.
- **Token**: a pseudonym of the vehicle, HMAC-SHA256 of its id under a key
  derived per tenant and per recipient (the API client), so two recipients
  cannot join their tokens and the VIN never leaves the tenant's cloud.
- **Range**: given by the head unit, or estimated from the fuel level or
  state of charge and the model's capacity and consumption (:func:`estimate_range_km`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cloud.recommend.catalog import Connector
from cloud.recommend.errors import InvalidContext

__all__ = [
    "COARSE_CELL_DEG",
    "Context",
    "Energy",
    "Fault",
    "FaultSeverity",
    "Maintenance",
    "Position",
    "Precision",
    "coarsen",
    "estimate_range_km",
    "pseudonym",
    "recipient_key",
]

COARSE_CELL_DEG = 0.1


class Precision(StrEnum):
    EXACT = "exact"
    COARSE = "coarse"


class Energy(StrEnum):
    FUEL = "fuel"
    ELECTRIC = "electric"


class FaultSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Maintenance(StrEnum):
    OK = "ok"
    DUE = "due"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    precision: Precision = Precision.EXACT

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90 <= self.lat <= 90):
            raise InvalidContext(f"latitude must be within -90..90, got {self.lat}", field="lat")
        if not (math.isfinite(self.lon) and -180 <= self.lon <= 180):
            raise InvalidContext(f"longitude must be within -180..180, got {self.lon}", field="lon")

    @property
    def uncertainty_km(self) -> float:
        """How far the true position may be from this one: half a coarse cell's diagonal."""
        if self.precision is Precision.EXACT:
            return 0.0
        km_per_deg = 111.195
        north = COARSE_CELL_DEG * km_per_deg / 2
        east = north * math.cos(math.radians(min(89.0, abs(self.lat))))
        return math.hypot(north, east)


def coarsen(position: Position) -> Position:
    """The centre of the coarse cell holding ``position`` (idempotent)."""

    def centre(value: float, low: float, high: float) -> float:
        cell = math.floor((value - low) / COARSE_CELL_DEG)
        cell = min(cell, round((high - low) / COARSE_CELL_DEG) - 1)
        return round(low + (cell + 0.5) * COARSE_CELL_DEG, 6)

    return Position(
        centre(position.lat, -90, 90), centre(position.lon, -180, 180), Precision.COARSE
    )


@dataclass(frozen=True, slots=True)
class Fault:
    code: str
    severity: FaultSeverity = FaultSeverity.WARNING


@dataclass(frozen=True, slots=True)
class Context:
    """What the ranking knows of the vehicle; ``position`` is already coarsened if it must be."""

    position: Position
    local_time: datetime
    energy: Energy = Energy.FUEL
    #: Fuel level or state of charge, %.
    level_pct: float | None = None
    range_km: float | None = None
    connectors: frozenset[Connector] = frozenset()
    faults: tuple[Fault, ...] = ()
    maintenance: Maintenance = Maintenance.OK
    model: str | None = None
    limit: int = 5
    content_limit: int = 3
    token: str | None = None
    #: Facts about how the context was built, returned to the caller (never logged).
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.local_time.tzinfo is None:
            raise InvalidContext("local_time must carry its UTC offset", field="local_time")
        if self.level_pct is not None and not 0 <= self.level_pct <= 100:
            raise InvalidContext(
                f"level_pct must be within 0..100, got {self.level_pct}", field="level_pct"
            )
        if self.range_km is not None and not 0 <= self.range_km <= 5000:
            raise InvalidContext(
                f"range_km must be within 0..5000, got {self.range_km}", field="range_km"
            )
        if not 1 <= self.limit <= 50:
            raise InvalidContext(f"limit must be within 1..50, got {self.limit}", field="limit")
        if not 0 <= self.content_limit <= 20:
            raise InvalidContext(
                f"content_limit must be within 0..20, got {self.content_limit}",
                field="content_limit",
            )


def estimate_range_km(level_pct: float, capacity: float, per_100km: float) -> float:
    """Range left from a level in %, a tank (l) or battery (kWh) and a consumption per 100 km."""
    if capacity <= 0 or per_100km <= 0:
        raise InvalidContext("capacity and consumption must be positive", field="model")
    return level_pct / 100.0 * capacity / per_100km * 100.0


def recipient_key(pseudonym_key: bytes, tenant: str, recipient: str) -> bytes:
    """The key one recipient's tokens are made with: derived, so one tenant secret serves all."""
    label = f"telehub/recommend/token\x1f{tenant}\x1f{recipient}".encode()
    return hmac.new(pseudonym_key, label, hashlib.sha256).digest()


def pseudonym(key: bytes, vehicle_id: str) -> str:
    """The vehicle's token for the recipient whose key is ``key``: 64 hex digits."""
    return hmac.new(key, vehicle_id.encode(), hashlib.sha256).hexdigest()
