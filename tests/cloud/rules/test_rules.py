"""Each rule on a synthetic scenario whose answer is known by construction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cloud.domain import FaultCode, FaultState
from cloud.rules import EventKind, RuleConfig, RuleEngine, ServiceRecord, Severity, event_id
from cloud.rules.engine import SignalSamples
from cloud.rules.state import DAY_US
from tests.cloud.rules.scenarios import T0, S, series, steady

CAR = "car-1"


def config(**values: Any) -> RuleConfig:
    return RuleConfig.model_validate(values)


def run(
    cfg: RuleConfig,
    samples: Mapping[str, SignalSamples],
    faults: list[FaultCode] | None = None,
    service: ServiceRecord | None = None,
) -> tuple[RuleEngine, list[tuple[EventKind, float]]]:
    """The engine after one batch, and its events as (kind, seconds after T0)."""
    engine = RuleEngine.new(cfg, CAR, service)
    out = engine.process(samples, faults or [])
    return engine, [(e.kind, (e.ts_us - T0) / S) for e in out.events]


def kinds(
    events: list[tuple[EventKind, float]], *wanted: EventKind
) -> list[tuple[EventKind, float]]:
    return [e for e in events if e[0] in wanted]


@pytest.mark.parametrize(
    ("role", "signal", "low", "cleared"),
    [
        ("fuel_level", "FuelLevel", EventKind.LOW_FUEL, EventKind.LOW_FUEL_CLEARED),
        ("state_of_charge", "SoC", EventKind.LOW_CHARGE, EventKind.LOW_CHARGE_CLEARED),
    ],
)
def test_low_level_has_hysteresis_and_does_not_flap(
    role: str, signal: str, low: EventKind, cleared: EventKind
) -> None:
    band = {"fuel_level": ("low_fuel_enter_pct", "low_fuel_exit_pct")}.get(
        role, ("low_charge_enter_pct", "low_charge_exit_pct")
    )
    cfg = config(
        signals={"speed": None, role: {"name": signal, "unit": "%"}},
        thresholds={band[0]: 12.0, band[1]: 18.0},
    )
    # Noise around the entry threshold, then around the exit threshold, then low again.
    values = [20, 15, 12.5, 11.9, 12.1, 11.8, 12.2, 13, 17.9, 18.0, 17.5, 12.5, 11.0, 12.01]
    _, events = run(cfg, {signal: series(enumerate(values))})
    assert events == [(low, 3.0), (cleared, 9.0), (low, 12.0)]


def test_long_idling_fires_once_per_idle_period_and_is_totalled_per_day() -> None:
    cfg = config(
        signals={"speed": {"name": "Speed"}, "engine_speed": {"name": "Rpm", "unit": "rpm"}},
        thresholds={"idle_minutes": 5},
    )
    speed = [*steady(0, 1200, 0.0), *steady(1200, 1260, 40.0), *steady(1260, 1620, 0.0)]
    rpm = steady(0, 1620, 800.0)
    engine, events = run(cfg, {"Speed": series(speed), "Rpm": series(rpm)})
    assert kinds(events, EventKind.LONG_IDLE) == [
        (EventKind.LONG_IDLE, 300.0),
        (EventKind.LONG_IDLE, 1260.0 + 300.0),
    ]
    # Idle from 0 s to the first moving sample at 1200 s, then 1260 s to the last at 1619 s.
    day = engine.process({})  # nothing new: no day changes
    assert day.idle_days == []
    assert engine.state.idle_days == {T0 // DAY_US: (1200 + 359) * S}


def test_idling_with_the_engine_off_is_not_idling() -> None:
    cfg = config(
        signals={"speed": {"name": "Speed"}, "engine_speed": {"name": "Rpm"}},
        thresholds={"idle_minutes": 1},
    )
    _, events = run(cfg, {"Speed": series(steady(0, 600, 0.0)), "Rpm": series(steady(0, 600, 0.0))})
    assert kinds(events, EventKind.LONG_IDLE) == []


def test_harsh_braking_from_speed_fires_once_per_braking() -> None:
    cfg = config(thresholds={"harsh_braking_mps2": 4.0})
    speed = [
        *steady(0, 10, 50.0),
        (10, 30.0),  # 20 km/h in 1 s: 5.6 m/s²
        (11, 15.0),  # 4.2 m/s²: the same braking, not re-armed yet
        *steady(12, 20, 15.0),  # steady: re-armed
        (20, 14.0),
        (21, 0.0),  # 3.9 m/s²: below the limit
        *steady(22, 30, 0.0),
        *steady(30, 40, 60.0),  # 60 km/h in a jump after 8 s at 0: acceleration, not braking
        (40, 40.0),  # 5.6 m/s² again
    ]
    _, events = run(cfg, {"Speed": series(speed)})
    assert kinds(events, EventKind.HARSH_BRAKING) == [
        (EventKind.HARSH_BRAKING, 10.0),
        (EventKind.HARSH_BRAKING, 40.0),
    ]


def test_harsh_braking_from_an_acceleration_signal() -> None:
    cfg = config(
        signals={"speed": None, "longitudinal_acceleration": {"name": "AccX", "unit": "g"}},
        thresholds={"harsh_braking_mps2": 4.0},
    )
    # In g: -0.45 g is 4.4 m/s² of braking; it re-arms above -0.2 g (half the limit).
    accel = [(0, 0.0), (1, -0.45), (2, -0.5), (3, -0.3), (4, -0.45), (5, -0.1), (6, -0.6)]
    _, events = run(cfg, {"AccX": series(accel)})
    assert kinds(events, EventKind.HARSH_BRAKING) == [
        (EventKind.HARSH_BRAKING, 1.0),
        (EventKind.HARSH_BRAKING, 6.0),
    ]


def test_geofence_enter_and_exit_for_circles_and_polygons() -> None:
    depot = {
        "kind": "circle",
        "name": "depot",
        "latitude": 56.0,
        "longitude": 10.0,
        "radius_m": 500,
    }
    square = {
        "kind": "polygon",
        "name": "square",
        "points": [[56.01, 10.01], [56.01, 10.03], [56.03, 10.03], [56.03, 10.01]],
    }
    cfg = config(
        signals={"latitude": {"name": "Lat"}, "longitude": {"name": "Lon"}, "speed": None},
        geofences=[depot, square],
    )
    # 0.001° of latitude is 111 m: start 333 m north of the depot, drive north-east.
    path = [(56.003, 10.0), (56.006, 10.0), (56.02, 10.02), (56.02, 10.025), (56.04, 10.02),
            (56.0, 10.001)]  # fmt: skip
    lat = series((i, p[0]) for i, p in enumerate(path))
    lon = series((i, p[1]) for i, p in enumerate(path))
    engine, events = run(cfg, {"Lat": lat, "Lon": lon})
    assert events == [
        (EventKind.GEOFENCE_EXIT, 1.0),
        (EventKind.GEOFENCE_ENTER, 2.0),
        (EventKind.GEOFENCE_EXIT, 4.0),
        (EventKind.GEOFENCE_ENTER, 5.0),
    ]
    out = RuleEngine.new(cfg, CAR).process({"Lat": lat, "Lon": lon})
    assert [e.details["geofence"] for e in out.events] == ["depot", "square", "square", "depot"]
    assert engine.state.inside == {"depot": True, "square": False}


def test_low_12v_battery_is_debounced_and_has_hysteresis() -> None:
    cfg = config(
        signals={"speed": None, "battery_voltage": {"name": "Volts", "unit": "V"}},
        thresholds={"low_voltage_enter": 11.8, "low_voltage_exit": 12.2, "low_voltage_seconds": 30},
    )
    volts = [
        *steady(0, 10, 12.6),
        *steady(10, 13, 10.2),  # cranking: 3 s below
        *steady(13, 100, 12.5),
        *steady(100, 200, 11.5),  # low from 100 s: fires at 130 s
        *[(200 + i, 11.9 if i % 2 else 12.1) for i in range(40)],  # flapping in the band
        *steady(240, 250, 12.4),  # fine again
    ]
    _, events = run(cfg, {"Volts": series(volts)})
    assert events == [(EventKind.LOW_BATTERY, 130.0), (EventKind.LOW_BATTERY_CLEARED, 240.0)]


def test_maintenance_due_by_distance_fires_once() -> None:
    cfg = config(
        signals={"speed": None, "odometer": {"name": "Odo", "unit": "km"}},
        models={"van": {"service_every_km": 5000, "service_every_days": 365}},
    )
    service = ServiceRecord(model="van", serviced_at_us=T0 - 10 * DAY_US, odometer_km=10_000)
    odo = [(i, 14_990.0 + i * 2) for i in range(20)]  # 15,000 km at 5 s
    _, events = run(cfg, {"Odo": series(odo)}, service=service)
    assert events == [(EventKind.MAINTENANCE_DUE, 5.0)]
    engine = RuleEngine.new(cfg, CAR, service)
    out = engine.process({"Odo": series(odo)})
    assert out.events[0].details["reason"] == "distance"
    assert out.events[0].details["odometer_km"] == 15_000.0


def test_maintenance_due_by_time_fires_once_and_again_after_a_new_service() -> None:
    cfg = config(
        signals={"speed": {"name": "Speed"}},
        default_model={"service_every_km": None, "service_every_days": 365},
    )
    # Serviced 365 days minus 30 s before T0: due at T0 + 30 s.
    serviced = T0 - 365 * DAY_US + 30 * S
    samples = {"Speed": series(steady(0, 120, 0.0))}
    engine, events = run(cfg, samples, service=ServiceRecord(serviced_at_us=serviced))
    assert events == [(EventKind.MAINTENANCE_DUE, 30.0)]
    again = RuleEngine(cfg, engine.state, ServiceRecord(serviced_at_us=serviced)).process(
        {"Speed": series(steady(120, 240, 0.0))}
    )
    assert again.events == []
    # A service on record since: a new baseline, nothing due for a year.
    after = RuleEngine(cfg, engine.state, ServiceRecord(serviced_at_us=T0 + 200 * S))
    assert after.process({"Speed": series(steady(240, 360, 0.0))}).events == []


def test_fault_codes_set_and_cleared_are_events_once() -> None:
    cfg = config(fault_severity={"P03": "critical", "P0301": "info"})

    def fault(code: str, state: FaultState, ts_s: float) -> FaultCode:
        return FaultCode("uds", "powertrain", 0x10, code, state, T0 + round(ts_s * S))

    faults = [
        fault("P0301", FaultState.SET, 1),
        fault("P0302", FaultState.SET, 2),
        fault("P0301", FaultState.SET, 3),  # still set: no new event
        fault("P0301", FaultState.CLEARED, 4),
        fault("U0100", FaultState.CLEARED, 5),  # never set here: nothing to clear
        fault("U0100", FaultState.SET, 6),
    ]
    engine = RuleEngine.new(cfg, CAR)
    out = engine.process({}, list(reversed(faults)))  # order of arrival does not matter
    assert [(e.kind, e.details["code"], e.severity) for e in out.events] == [
        (EventKind.FAULT_SET, "P0301", Severity.INFO),  # the longest prefix wins
        (EventKind.FAULT_SET, "P0302", Severity.CRITICAL),
        (EventKind.FAULT_CLEARED, "P0301", Severity.INFO),
        (EventKind.FAULT_SET, "U0100", Severity.WARNING),
    ]
    assert sorted(f.code for f in engine.state.active_faults.values()) == ["P0302", "U0100"]
    key = "uds/powertrain/16/P0302"
    assert out.events[1].id == event_id(CAR, EventKind.FAULT_SET, T0 + 2 * S, key)


def test_a_stop_shorter_than_the_gap_stays_in_the_trip_and_a_longer_one_ends_it() -> None:
    cfg = config(thresholds={"trip_end_gap_s": 60, "idle_speed_kmh": 2, "trip_end_kmh": 2})
    speed = [
        *steady(0, 10, 0.0),
        *steady(10, 100, 36.0),  # 10 m/s from 10 s
        *steady(100, 130, 0.0),  # 30 s stop: idle within the trip
        *steady(130, 200, 36.0),
        *steady(200, 400, 0.0),  # ends the trip at 200 s
    ]
    engine = RuleEngine.new(cfg, CAR)
    out = engine.process({"Speed": series(speed)})
    trip_events = kinds(
        [(e.kind, (e.ts_us - T0) / S) for e in out.events],
        EventKind.TRIP_STARTED,
        EventKind.TRIP_ENDED,
    )
    assert trip_events == [
        (EventKind.TRIP_STARTED, 10.0),
        (EventKind.TRIP_ENDED, 200.0),
    ]
    (trip,) = out.trips
    assert ((trip.start_us - T0) / S, trip.duration_s, trip.idle_s) == (10.0, 190.0, 30.0)
    # Trapezoids from the start sample on: 89 s + 69 s at 10 m/s, and half a second's
    # worth at the three edges after it (the stop's two and the final stop's first).
    assert trip.distance_km == pytest.approx((89 + 69 + 3 * 0.5) * 10 / 1000)
    assert engine.state.trip is None
    # Without an engine speed the final stop is not idling: only the 30 s count.
    assert engine.state.idle_days == {T0 // DAY_US: 30 * S}


def test_fuel_and_energy_used_in_a_trip_and_fuel_wasted_idling() -> None:
    cfg = config(
        signals={
            "speed": {"name": "Speed"},
            "engine_speed": {"name": "Rpm"},
            "fuel_level": {"name": "Fuel", "unit": "%"},
            "state_of_charge": {"name": "Soc", "unit": "%"},
        },
        default_model={"fuel_tank_litres": 50, "battery_kwh": 10, "idle_fuel_lph": 1.2},
    )
    speed = [*steady(0, 600, 0.0), *steady(600, 1200, 50.0)]  # 10 min idling, then driving
    fuel = [(t, 60.0 - t / 120) for t in range(0, 1200, 10)]  # 60 % down to 50.08 %
    soc = [(0, 80.0), (700, 70.0), (1100, 75.0)]  # charged back a little: used is start - last
    out = RuleEngine.new(cfg, CAR).process(
        {
            "Speed": series(speed),
            "Rpm": series(steady(0, 1200, 900.0)),
            "Fuel": series(fuel),
            "Soc": series(soc),
        }
    )
    (trip,) = out.trips
    assert trip.end_us is None
    # The trip starts at 600 s with the fuel last read at 590 s (a reading at the same
    # time as the start sample comes after it); the last reading is at 1190 s.
    assert trip.fuel_used_l == pytest.approx((1190 - 590) / 120 / 100 * 50)
    assert trip.energy_used_kwh == pytest.approx((80 - 75) / 100 * 10)
    assert trip.idle_s == 0
    (day,) = out.idle_days
    assert day.idle_s == 600
    assert day.idle_fuel_l == pytest.approx(600 / 3600 * 1.2)


def test_a_batch_older_than_what_was_processed_is_skipped_and_counted() -> None:
    cfg = config(
        signals={"speed": None, "fuel_level": {"name": "Fuel", "unit": "%"}},
        thresholds={"low_fuel_enter_pct": 10, "low_fuel_exit_pct": 15},
    )
    early = {"Fuel": series([(0, 9.0), (1, 8.0), (2, 7.5)])}  # would raise low fuel
    late = {"Fuel": series([(2, 20.0), (3, 30.0), (4, 29.0)])}  # overlaps at 2 s
    engine = RuleEngine.new(cfg, CAR)
    assert engine.process(late).events == []
    # The earlier batch arrives after (a reconnect resent it): its samples are older.
    out = engine.process(early)
    assert (out.events, out.samples) == ([], 0)
    assert engine.state.late_samples == 3
    assert engine.state.watermarks == {"fuel_level": T0 + 4 * S}
