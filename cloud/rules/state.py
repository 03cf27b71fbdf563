"""The rule engine's memory of one vehicle, as a snapshot that survives a restart.

Everything the engine needs to continue exactly where it stopped is in
``EngineState``: plain dataclasses of numbers, strings, lists and dicts, so
``to_json``/``from_json`` round-trip it through JSON without loss (times are
integer microseconds; idle time too, so sums do not drift in floating point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

__all__ = ["ActiveFault", "EngineState", "OpenTrip", "ServiceRecord"]

#: Microseconds in a day: idle totals and daily statistics are per UTC day.
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A vehicle's model and its last service; ``None`` fields are not known.

    Without a last service, the first data the rules see is the baseline
    (the vehicle joined the fleet serviced).
    """

    model: str | None = None
    serviced_at_us: int | None = None
    odometer_km: float | None = None


@dataclass
class ActiveFault:
    code: str
    severity: str
    since_us: int


@dataclass
class OpenTrip:
    """A trip under way, with what is needed to finish its figures."""

    start_us: int
    #: Last speed sample at or above the trip-end speed.
    last_moving_us: int
    distance_km: float = 0.0
    idle_us: int = 0
    #: Per level role (fuel level, state of charge): its value when the trip started
    #: (or first seen in it), and its last value while the trip moved.
    levels_start: dict[str, float] = field(default_factory=dict)
    levels_last: dict[str, float] = field(default_factory=dict)
    #: First sample below the trip-end speed of the stop under way, if any; what
    #: accrues after it is pending: kept if the trip goes on, dropped if it ends.
    stopped_since_us: int | None = None
    pending_distance_km: float = 0.0
    #: Pending idle time by UTC day number.
    pending_idle_us: dict[int, int] = field(default_factory=dict)


@dataclass
class EngineState:
    """The engine's state for one vehicle (see the module docstring)."""

    vehicle_id: str
    #: CAN time of the last sample processed, over every role.
    clock_us: int | None = None
    #: Per role: time of its last processed sample; older or equal samples are late.
    watermarks: dict[str, int] = field(default_factory=dict)
    #: Per role: its last value, in the engine's unit.
    values: dict[str, float] = field(default_factory=dict)
    late_samples: int = 0
    #: Time of the last speed sample (speed is integrated and differentiated).
    speed_ts: int | None = None
    trip: OpenTrip | None = None
    idle_since_us: int | None = None
    idle_event_fired: bool = False
    #: Idle time per UTC day number, for the last few days only (older days are final).
    idle_days: dict[int, int] = field(default_factory=dict)
    #: Level roles (fuel level, state of charge) now below their band.
    low_levels: list[str] = field(default_factory=list)
    low_battery: bool = False
    battery_below_since_us: int | None = None
    braking_armed: bool = True
    #: Geofence name → whether the last position was inside it.
    inside: dict[str, bool] = field(default_factory=dict)
    #: Fault key (protocol/bus/source/code) → the fault while it is set.
    active_faults: dict[str, ActiveFault] = field(default_factory=dict)
    #: Baseline of maintenance when no service is on record: the first data seen.
    first_seen_us: int | None = None
    first_odometer_km: float | None = None
    #: The baseline whose maintenance-due event fired (re-arms when it changes).
    maintenance_fired: str | None = None
    #: Per watched role: day number → [count, sum] of its samples (daily means).
    daily_sums: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    #: Day number → lowest battery voltage of the day.
    battery_daily_min: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-compatible data."""
        data: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        return data

    @classmethod
    def from_json(cls, data: Any) -> EngineState:
        """The state ``to_json`` produced (raises ``pydantic.ValidationError`` if it is not)."""
        return _ADAPTER.validate_python(data)


_ADAPTER: TypeAdapter[EngineState] = TypeAdapter(EngineState)
