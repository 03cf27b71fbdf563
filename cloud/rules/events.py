"""What the rules produce: events, trips, idle time per day, and a health score.

Events carry a deterministic id (``event_id``): the same vehicle, kind, CAN
time and subject always give the same id, so processing a batch again (a
worker restarted before it committed) yields events the store recognises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "DayIdle",
    "Event",
    "EventKind",
    "HealthReason",
    "HealthScore",
    "Severity",
    "Trip",
    "event_id",
]


class EventKind(StrEnum):
    FAULT_SET = "fault_set"
    FAULT_CLEARED = "fault_cleared"
    MAINTENANCE_DUE = "maintenance_due"
    LOW_FUEL = "low_fuel"
    LOW_FUEL_CLEARED = "low_fuel_cleared"
    LOW_CHARGE = "low_charge"
    LOW_CHARGE_CLEARED = "low_charge_cleared"
    LONG_IDLE = "long_idle"
    HARSH_BRAKING = "harsh_braking"
    GEOFENCE_ENTER = "geofence_enter"
    GEOFENCE_EXIT = "geofence_exit"
    LOW_BATTERY = "low_battery"
    LOW_BATTERY_CLEARED = "low_battery_cleared"
    TRIP_STARTED = "trip_started"
    TRIP_ENDED = "trip_ended"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def event_id(vehicle_id: str, kind: EventKind, ts_us: int, subject: str = "") -> str:
    """A stable id of one event: 32 hex digits of a SHA-256 over what identifies it."""
    text = f"{vehicle_id}\x1f{kind.value}\x1f{ts_us}\x1f{subject}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Event:
    """Something a rule saw happen to one vehicle at one CAN time."""

    id: str
    kind: EventKind
    vehicle_id: str
    ts_us: int
    severity: Severity
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Trip:
    """One trip; ``end_us`` is ``None`` while it goes on.

    ``fuel_used_l``/``energy_used_kwh`` are ``None`` when the vehicle has no
    fuel level / state of charge mapped or its model no tank / battery size.
    """

    start_us: int
    end_us: int | None = None
    distance_km: float = 0.0
    idle_s: float = 0.0
    idle_fuel_l: float = 0.0
    fuel_used_l: float | None = None
    energy_used_kwh: float | None = None
    #: Last time the trip was seen moving or running (its end while it goes on).
    last_us: int = 0

    @property
    def duration_s(self) -> float:
        end = self.end_us if self.end_us is not None else self.last_us
        return max(0, end - self.start_us) / 1e6


@dataclass(slots=True)
class DayIdle:
    """Idle time of one vehicle on one UTC day (``day``: ISO date)."""

    day: str
    idle_s: float = 0.0
    idle_fuel_l: float = 0.0


@dataclass(frozen=True, slots=True)
class HealthReason:
    """One reason a health score is below 100, with the points it costs."""

    code: str
    points: float
    text: str


@dataclass(frozen=True, slots=True)
class HealthScore:
    score: int
    reasons: tuple[HealthReason, ...]
    #: CAN time of the newest data the score reflects.
    as_of_us: int
