"""The per-vehicle rule engine: samples and fault codes in, events, trips and idle time out.

``RuleEngine.process`` takes one batch: per catalog signal name, its
timestamps (µs) and values, each signal's samples sorted by time (the agent
batches them so); and fault-code changes. What it assumes and does:

- fault codes are applied first, in (time, code) order; a code set twice
  without a clear between is one event;
- the mapped signals' samples are merged into one timeline by time (ties in
  the fixed order of ``ROLES``, so a position's latitude comes before its
  longitude) and run through the rules one by one;
- batches are expected in time order. A sample not newer than the last one
  processed of its role (a batch that arrived late across a reconnect, or
  overlapping one already processed) is skipped and counted in
  ``state.late_samples``: processing is exactly-once per sample, never
  reordered after the fact;
- time is accounted sample-and-hold: the interval up to a sample has the
  state the previous samples left; an interval longer than
  ``max_gap_s`` is a gap in the data and is not counted.

Trips: a trip starts at the first speed sample at or above ``trip_start_kmh``
and ends at the first sample of a stop (below ``trip_end_kmh``) that lasted
``trip_end_gap_s``; what accrued during that final stop is dropped. Distance
is the odometer's increase when one is mapped, else the trapezoid integral of
speed from the start sample on. Idle: engine running (or, without an engine
speed, within a trip) and below ``idle_speed_kmh``; an interval of idling
counts for the UTC day it ends in. Fuel or energy used in a trip is the drop
of the fuel level / state of charge from its start to its last reading while
moving, times the model's tank / battery size.

The engine is deterministic: the same state and input give the same output
and event ids, however the input is split into batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from cloud.domain import FaultCode, FaultState
from cloud.rules.config import RuleConfig
from cloud.rules.events import (
    DayIdle,
    Event,
    EventKind,
    HealthScore,
    Severity,
    Trip,
    event_id,
)
from cloud.rules.geo import inside
from cloud.rules.health import health_score
from cloud.rules.state import DAY_US, ActiveFault, EngineState, OpenTrip, ServiceRecord

__all__ = ["ROLES", "EngineOutput", "RuleEngine", "SignalSamples", "day_iso"]

#: Signal roles in the order ties in time are processed.
ROLES = (
    "engine_speed",
    "speed",
    "odometer",
    "fuel_level",
    "state_of_charge",
    "battery_voltage",
    "longitudinal_acceleration",
    "latitude",
    "longitude",
)
_ROLE_INDEX = {role: index for index, role in enumerate(ROLES)}
#: Days of idle totals kept in the state (older ones can no longer change).
_IDLE_DAYS_KEPT = 3

#: One signal's samples: (timestamps in µs, values), each sorted by time.
SignalSamples = tuple[npt.ArrayLike, npt.ArrayLike]


def day_iso(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


@dataclass
class EngineOutput:
    """What one ``process`` call produced."""

    events: list[Event] = field(default_factory=list)
    #: Trips that ended, then the one under way (if any), as they stand now.
    trips: list[Trip] = field(default_factory=list)
    #: Idle totals of every day this call changed, as they stand now.
    idle_days: list[DayIdle] = field(default_factory=list)
    samples: int = 0


class RuleEngine:
    """Runs one vehicle's rules from a state; ``state`` is the snapshot to keep."""

    def __init__(
        self,
        config: RuleConfig,
        state: EngineState,
        service: ServiceRecord | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.service = service or ServiceRecord()
        self._spec = config.model_spec(self.service.model)
        self._t = config.thresholds
        mapping = config.signals.roles()
        self._has_engine = "engine_speed" in mapping
        self._has_odometer = "odometer" in mapping
        self._has_accel = "longitudinal_acceleration" in mapping
        self._watched = {r for r in config.health.anomaly_roles if r in mapping}
        self._out = EngineOutput()
        self._days_touched: set[int] = set()

    @classmethod
    def new(
        cls, config: RuleConfig, vehicle_id: str, service: ServiceRecord | None = None
    ) -> RuleEngine:
        return cls(config, EngineState(vehicle_id=vehicle_id), service)

    # ------------------------------------------------------------------ entry

    def process(
        self,
        samples: Mapping[str, SignalSamples],
        faults: Sequence[FaultCode] = (),
    ) -> EngineOutput:
        """Run one batch through the rules (see the module docstring)."""
        self._out = EngineOutput()
        self._days_touched = set()
        for fault in sorted(faults, key=_fault_order):
            self._fault(fault)
        times, roles, values = self._timeline(samples)
        self._out.samples = len(times)
        for ts, role, value in zip(times.tolist(), roles.tolist(), values.tolist(), strict=True):
            self._step(ts, ROLES[role], value)
        state = self.state
        if state.trip is not None:
            self._out.trips.append(self._trip_view(state.trip, None))
        self._out.idle_days = [self._day_view(day) for day in sorted(self._days_touched)]
        if state.idle_days:
            newest = max(state.idle_days)
            state.idle_days = {
                d: us for d, us in state.idle_days.items() if d > newest - _IDLE_DAYS_KEPT
            }
        return self._out

    def _timeline(
        self, samples: Mapping[str, SignalSamples]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.float64]]:
        parts_t, parts_r, parts_v = [], [], []
        for role, ref in self.config.signals.roles().items():
            columns = samples.get(ref.name)
            if columns is None:
                continue
            ts = np.asarray(columns[0], dtype=np.int64)
            vs = np.asarray(columns[1], dtype=np.float64) * ref.factor
            mark = self.state.watermarks.get(role)
            if mark is not None:
                fresh = ts > mark
                self.state.late_samples += int(len(ts) - np.count_nonzero(fresh))
                ts, vs = ts[fresh], vs[fresh]
            keep = np.isfinite(vs)
            ts, vs = ts[keep], vs[keep]
            if len(ts):
                self.state.watermarks[role] = int(ts[-1])
            parts_t.append(ts)
            parts_v.append(vs)
            parts_r.append(np.full(len(ts), _ROLE_INDEX[role], dtype=np.int8))
        if not parts_t:
            return np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.float64)
        times, roles, values = (
            np.concatenate(parts_t),
            np.concatenate(parts_r),
            np.concatenate(parts_v),
        )
        order = np.lexsort((roles, times))
        return times[order], roles[order], values[order]

    # ------------------------------------------------------------------ one sample

    def _step(self, ts: int, role: str, value: float) -> None:
        state = self.state
        if state.first_seen_us is None:
            state.first_seen_us = ts
        clock = state.clock_us
        if clock is not None:
            if ts - clock > self._t.max_gap_s * 1e6:
                self._gap()
            elif ts > clock:
                self._account(clock, ts)
        # A stop that has lasted long enough ended the trip before this sample (which
        # may start the next one).
        self._trip_end_check(ts)
        previous = state.values.get(role)
        state.values[role] = value
        state.clock_us = ts if clock is None else max(clock, ts)
        if role in self._watched:
            self._daily(role, ts, value)
        if role == "speed":
            self._speed(ts, value, previous)
        elif role == "odometer":
            self._odometer(value, previous)
        elif role in ("fuel_level", "state_of_charge"):
            self._level(role, ts, value)
        elif role == "battery_voltage":
            self._battery(ts, value)
        elif role == "longitudinal_acceleration":
            self._braking(ts, -value, {"acceleration_mps2": value})
        elif role == "longitude":
            self._position(ts)
        self._idle_check(ts)
        self._maintenance_check(ts)

    def _account(self, start: int, end: int) -> None:
        """Attribute the interval [start, end] with the state the samples before left."""
        if not self._idling():
            return
        dt = end - start
        day = end // DAY_US
        trip = self.state.trip
        if trip is not None and trip.stopped_since_us is not None:
            trip.pending_idle_us[day] = trip.pending_idle_us.get(day, 0) + dt
            return
        if trip is not None:
            trip.idle_us += dt
        self._add_idle(day, dt)

    def _add_idle(self, day: int, us: int) -> None:
        self.state.idle_days[day] = self.state.idle_days.get(day, 0) + us
        self._days_touched.add(day)

    def _idling(self) -> bool:
        values = self.state.values
        speed = values.get("speed")
        if speed is None or speed >= self._t.idle_speed_kmh:
            return False
        if self._has_engine:
            return values.get("engine_speed", 0.0) >= self._t.engine_on_rpm
        return self.state.trip is not None

    def _gap(self) -> None:
        """No data for longer than ``max_gap_s``: end what cannot have gone on unseen."""
        trip = self.state.trip
        if trip is not None:
            end = (
                trip.stopped_since_us if trip.stopped_since_us is not None else trip.last_moving_us
            )
            self._end_trip(end)
        self.state.idle_since_us = None
        self.state.idle_event_fired = False
        self.state.battery_below_since_us = None
        self.state.braking_armed = True

    # ------------------------------------------------------------------ trips

    def _speed(self, ts: int, speed: float, previous: float | None) -> None:
        state, t = self.state, self._t
        trip = state.trip
        prev_ts, state.speed_ts = state.speed_ts, ts
        # No interval to integrate or brake over at the first sample.
        dt = ts - prev_ts if previous is not None and prev_ts is not None else 0
        if trip is not None and dt > 0 and previous is not None and not self._has_odometer:
            self._add_distance(trip, (previous + speed) / 2 * dt / 3.6e9)
        if trip is None:
            if speed >= t.trip_start_kmh:
                levels: dict[str, float] = {
                    role: state.values[role]
                    for role in ("fuel_level", "state_of_charge")
                    if role in state.values
                }
                state.trip = OpenTrip(
                    start_us=ts, last_moving_us=ts, levels_start=levels, levels_last=dict(levels)
                )
                self._emit(EventKind.TRIP_STARTED, ts, Severity.INFO, {"start_us": ts})
        elif speed >= t.trip_end_kmh:
            trip.last_moving_us = ts
            if trip.stopped_since_us is not None:
                self._resume(trip)
        elif trip.stopped_since_us is None:
            trip.stopped_since_us = ts
        window = t.harsh_braking_window_s * 1e6
        if 0 < dt <= window and previous is not None and not self._has_accel:
            decel = (previous - speed) / 3.6 / (dt / 1e6)
            self._braking(ts, decel, {"from_kmh": previous, "to_kmh": speed})

    def _add_distance(self, trip: OpenTrip, km: float) -> None:
        if trip.stopped_since_us is not None:
            trip.pending_distance_km += km
        else:
            trip.distance_km += km

    def _odometer(self, km: float, previous: float | None) -> None:
        state = self.state
        if state.first_odometer_km is None:
            state.first_odometer_km = km
        trip = state.trip
        # A decrease is a reset (a trip counter, a replaced unit): nothing travelled.
        if trip is not None and previous is not None and km > previous:
            self._add_distance(trip, km - previous)

    def _resume(self, trip: OpenTrip) -> None:
        """The vehicle moves again before the trip ended: the stop belongs to the trip."""
        trip.distance_km += trip.pending_distance_km
        for day, us in sorted(trip.pending_idle_us.items()):
            trip.idle_us += us
            self._add_idle(day, us)
        trip.stopped_since_us = None
        trip.pending_distance_km = 0.0
        trip.pending_idle_us = {}

    def _trip_end_check(self, ts: int) -> None:
        trip = self.state.trip
        if trip is None or trip.stopped_since_us is None:
            return
        if ts - trip.stopped_since_us >= self._t.trip_end_gap_s * 1e6:
            self._end_trip(trip.stopped_since_us)

    def _end_trip(self, end_us: int) -> None:
        trip = self.state.trip
        assert trip is not None
        if self._has_engine:
            # The engine ran on after the trip: real idling, of the day but not the trip.
            for day, us in sorted(trip.pending_idle_us.items()):
                self._add_idle(day, us)
        self.state.trip = None
        view = self._trip_view(trip, end_us)
        self._out.trips.append(view)
        self._emit(
            EventKind.TRIP_ENDED,
            end_us,
            Severity.INFO,
            {
                "start_us": trip.start_us,
                "distance_km": round(view.distance_km, 3),
                "duration_s": round(view.duration_s, 3),
                "idle_s": round(view.idle_s, 3),
            },
            subject=str(trip.start_us),
        )

    def _trip_view(self, trip: OpenTrip, end_us: int | None) -> Trip:
        spec = self._spec
        idle_s = trip.idle_us / 1e6
        # Refuelling or charging within a trip is not told apart: used is never negative.
        used = {
            role: max(0.0, start - trip.levels_last.get(role, start)) / 100
            for role, start in trip.levels_start.items()
        }
        fuel = energy = None
        if spec.fuel_tank_litres and "fuel_level" in used:
            fuel = used["fuel_level"] * spec.fuel_tank_litres
        if spec.battery_kwh and "state_of_charge" in used:
            energy = used["state_of_charge"] * spec.battery_kwh
        return Trip(
            start_us=trip.start_us,
            end_us=end_us,
            distance_km=trip.distance_km,
            idle_s=idle_s,
            idle_fuel_l=idle_s / 3600 * spec.idle_fuel_lph,
            fuel_used_l=fuel,
            energy_used_kwh=energy,
            last_us=trip.last_moving_us if end_us is None else end_us,
        )

    def _day_view(self, day: int) -> DayIdle:
        idle_s = self.state.idle_days.get(day, 0) / 1e6
        return DayIdle(day_iso(day), idle_s, idle_s / 3600 * self._spec.idle_fuel_lph)

    # ------------------------------------------------------------------ levels

    def _level(self, role: str, ts: int, pct: float) -> None:
        """Fuel level or state of charge: trip consumption, and the low band's edges."""
        state, t = self.state, self._t
        trip = state.trip
        if trip is not None and trip.stopped_since_us is None:
            trip.levels_start.setdefault(role, pct)
            trip.levels_last[role] = pct
        if role == "fuel_level":
            enter, leave = t.low_fuel_enter_pct, t.low_fuel_exit_pct
            low, cleared = EventKind.LOW_FUEL, EventKind.LOW_FUEL_CLEARED
        else:
            enter, leave = t.low_charge_enter_pct, t.low_charge_exit_pct
            low, cleared = EventKind.LOW_CHARGE, EventKind.LOW_CHARGE_CLEARED
        if role not in state.low_levels and pct <= enter:
            state.low_levels.append(role)
            self._emit(low, ts, Severity.WARNING, {"percent": pct})
        elif role in state.low_levels and pct >= leave:
            state.low_levels.remove(role)
            self._emit(cleared, ts, Severity.INFO, {"percent": pct})

    def _battery(self, ts: int, volts: float) -> None:
        state, t = self.state, self._t
        day = ts // DAY_US
        lowest = state.battery_daily_min.get(day)
        if lowest is None or volts < lowest:
            state.battery_daily_min[day] = volts
            keep = self.config.health.battery_days
            if len(state.battery_daily_min) > keep:
                for old in sorted(state.battery_daily_min)[:-keep]:
                    del state.battery_daily_min[old]
        if state.low_battery:
            if volts >= t.low_voltage_exit:
                state.low_battery = False
                state.battery_below_since_us = None
                self._emit(EventKind.LOW_BATTERY_CLEARED, ts, Severity.INFO, {"volts": volts})
            return
        if volts >= t.low_voltage_enter:
            state.battery_below_since_us = None
            return
        since = state.battery_below_since_us
        if since is None:
            state.battery_below_since_us = since = ts
        # Debounced: cranking the engine dips the voltage for a few seconds.
        if ts - since >= t.low_voltage_seconds * 1e6:
            state.low_battery = True
            self._emit(
                EventKind.LOW_BATTERY,
                ts,
                Severity.WARNING,
                {"volts": volts, "below_since_us": since},
            )

    def _braking(self, ts: int, decel: float, details: dict[str, float]) -> None:
        state, limit = self.state, self._t.harsh_braking_mps2
        if state.braking_armed and decel >= limit:
            state.braking_armed = False
            self._emit(
                EventKind.HARSH_BRAKING,
                ts,
                Severity.WARNING,
                {"deceleration_mps2": round(decel, 3), **details},
            )
        elif not state.braking_armed and decel < limit / 2:
            state.braking_armed = True

    def _position(self, ts: int) -> None:
        lat = self.state.values.get("latitude")
        lon = self.state.values.get("longitude")
        # (0, 0) is what receivers without a fix report, not a position in the sea.
        if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
            return
        for fence in self.config.geofences:
            now = inside(fence, lat, lon)
            before = self.state.inside.get(fence.name)
            self.state.inside[fence.name] = now
            # The first position only says where the vehicle is, not that it moved.
            if before is None or before == now:
                continue
            kind = EventKind.GEOFENCE_ENTER if now else EventKind.GEOFENCE_EXIT
            details = {"geofence": fence.name, "latitude": lat, "longitude": lon}
            self._emit(kind, ts, Severity.INFO, details, subject=fence.name)

    # ------------------------------------------------------------------ idle, maintenance

    def _idle_check(self, ts: int) -> None:
        state = self.state
        if not self._idling():
            state.idle_since_us = None
            state.idle_event_fired = False
            return
        if state.idle_since_us is None:
            state.idle_since_us = ts
        limit = self._t.idle_minutes * 60e6
        if not state.idle_event_fired and ts - state.idle_since_us >= limit:
            state.idle_event_fired = True
            self._emit(
                EventKind.LONG_IDLE,
                ts,
                Severity.WARNING,
                {"idle_since_us": state.idle_since_us, "idle_minutes": self._t.idle_minutes},
            )

    def health(self) -> HealthScore:
        """The vehicle's health score as of the newest data processed."""
        as_of = self.state.clock_us or 0
        return health_score(self.state, self.config, self.maintenance_status(as_of), as_of)

    def maintenance_status(self, now_us: int) -> tuple[float, str] | None:
        """How far into its service interval the vehicle is (1.0: due), and by what.

        ``None`` when nothing is known to measure it from.
        """
        state, spec, service = self.state, self._spec, self.service
        base_us = (
            service.serviced_at_us if service.serviced_at_us is not None else state.first_seen_us
        )
        base_km = (
            service.odometer_km if service.odometer_km is not None else state.first_odometer_km
        )
        fractions: list[tuple[float, str]] = []
        if spec.service_every_days and base_us is not None:
            fractions.append(((now_us - base_us) / DAY_US / spec.service_every_days, "time"))
        odometer = state.values.get("odometer")
        if spec.service_every_km and base_km is not None and odometer is not None:
            fractions.append(((odometer - base_km) / spec.service_every_km, "distance"))
        return max(fractions) if fractions else None

    def _maintenance_key(self) -> str:
        service = self.service
        return f"{service.serviced_at_us}/{service.odometer_km}/{self.state.first_seen_us}"

    def _maintenance_check(self, ts: int) -> None:
        key = self._maintenance_key()
        if self.state.maintenance_fired == key:
            return
        status = self.maintenance_status(ts)
        if status is None or status[0] < 1.0:
            return
        self.state.maintenance_fired = key
        details = {"reason": status[1], "fraction": round(status[0], 4)}
        odometer = self.state.values.get("odometer")
        if odometer is not None:
            details["odometer_km"] = odometer
        self._emit(EventKind.MAINTENANCE_DUE, ts, Severity.WARNING, details, subject=key)

    # ------------------------------------------------------------------ history, faults

    def _daily(self, role: str, ts: int, value: float) -> None:
        days = self.state.daily_sums.setdefault(role, {})
        day = ts // DAY_US
        sums = days.get(day)
        if sums is None:
            days[day] = sums = [0.0, 0.0]
            keep = self.config.health.anomaly_days + 1
            if len(days) > keep:
                for old in sorted(days)[:-keep]:
                    del days[old]
        sums[0] += 1
        sums[1] += value

    def _fault(self, fault: FaultCode) -> None:
        key = f"{fault.protocol}/{fault.bus}/{fault.source}/{fault.code}"
        active = self.state.active_faults
        details = {
            "protocol": fault.protocol,
            "bus": fault.bus,
            "source": fault.source,
            "code": fault.code,
        }
        if fault.state is FaultState.SET and key not in active:
            severity = self.config.severity_of(fault.code)
            active[key] = ActiveFault(fault.code, severity, fault.ts_us)
            self._emit(EventKind.FAULT_SET, fault.ts_us, Severity(severity), details, subject=key)
        elif fault.state is FaultState.CLEARED and key in active:
            del active[key]
            self._emit(EventKind.FAULT_CLEARED, fault.ts_us, Severity.INFO, details, subject=key)

    def _emit(
        self,
        kind: EventKind,
        ts: int,
        severity: Severity,
        details: Mapping[str, object],
        *,
        subject: str = "",
    ) -> None:
        vehicle = self.state.vehicle_id
        self._out.events.append(
            Event(event_id(vehicle, kind, ts, subject), kind, vehicle, ts, severity, dict(details))
        )


def _fault_order(fault: FaultCode) -> tuple[int, str, str, int, str, str]:
    return (fault.ts_us, fault.protocol, fault.bus, fault.source, fault.code, fault.state.value)
