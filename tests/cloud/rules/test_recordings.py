"""Trips, idle time, long idling and geofences on the bundled CSS Electronics recordings.

The expected figures are computed here from the recordings decoded by
python-can and cantools (``scenarios``), with numpy over the speed series:
distance as the trapezoid integral of Speed or the increase of DistanceTrip,
idle as the time between Speed samples below the idle speed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloud.rules import EngineState, EventKind, RuleConfig, RuleEngine, Trip
from cloud.rules.state import DAY_US
from tests.cloud.rules.scenarios import Columns, drive, split, truck

pytestmark = pytest.mark.slow

START_KMH, END_KMH, IDLE_KMH = 5.0, 2.0, 2.0


def drive_config(gap_s: float, *, odometer: bool = False, **extra: object) -> RuleConfig:
    signals: dict[str, object] = {
        "speed": {"name": "Speed", "unit": "m/s"},
        "latitude": {"name": "Latitude", "unit": "deg"},
        "longitude": {"name": "Longitude", "unit": "deg"},
    }
    if odometer:
        signals["odometer"] = {"name": "DistanceTrip", "unit": "m"}
    thresholds = {
        "trip_start_kmh": START_KMH,
        "trip_end_kmh": END_KMH,
        "idle_speed_kmh": IDLE_KMH,
        "trip_end_gap_s": gap_s,
    }
    return RuleConfig.model_validate({"signals": signals, "thresholds": thresholds, **extra})


def reference_trips(speed: Columns, gap_s: float) -> list[dict[str, float | int | None]]:
    """Trips by the documented definition, walking the Speed samples alone."""
    t, kmh = speed[0], speed[1] * 3.6
    trips: list[dict[str, float | int | None]] = []
    start: int | None = None
    stop: int | None = None
    last = 0
    idle_us = 0

    def close(end: int | None, upto: int) -> None:
        assert start is not None
        seconds = t[start : upto + 1] / 1e6
        trips.append(
            {
                "start_us": int(t[start]),
                "end_us": None if end is None else int(t[end]),
                "last_us": int(t[last] if end is None else t[end]),
                "distance_km": float(np.trapezoid(kmh[start : upto + 1] / 3.6, seconds)) / 1000,
                "idle_s": idle_us / 1e6,
            }
        )

    for i in range(len(t)):
        if start is not None and stop is not None and t[i] - t[stop] >= gap_s * 1e6:
            close(stop, stop)
            start = None
        if start is None:
            if kmh[i] >= START_KMH:
                start, stop, last, idle_us = i, None, i, 0
            continue
        if kmh[i] >= END_KMH:
            if stop is not None:
                # The stop belongs to the trip: its intervals below the idle speed are idle.
                idle_us += int(sum(t[j + 1] - t[j] for j in range(stop, i) if kmh[j] < IDLE_KMH))
            stop, last = None, i
        elif stop is None:
            stop = i
    if start is not None:
        close(None, last if stop is None else stop)
    return trips


def engine_trips(cfg: RuleConfig) -> tuple[RuleEngine, list[Trip]]:
    engine = RuleEngine.new(cfg, "drive")
    out = engine.process(drive())
    return engine, out.trips


@pytest.mark.parametrize("gap_s", [180.0, 10.0])
def test_trips_and_idle_on_the_drive_match_the_speed_series(gap_s: float) -> None:
    expected = reference_trips(drive()["Speed"], gap_s)
    engine, trips = engine_trips(drive_config(gap_s))
    assert len(trips) == len(expected) >= 1
    for trip, ref in zip(trips, expected, strict=True):
        assert (trip.start_us, trip.end_us, trip.last_us) == (
            ref["start_us"],
            ref["end_us"],
            ref["last_us"],
        )
        assert trip.distance_km == pytest.approx(ref["distance_km"], rel=1e-6)
        assert trip.idle_s == pytest.approx(ref["idle_s"], abs=1e-6)
    # Without an engine speed, idling is standing within a trip: the day's total is the trips'.
    day = int(trips[0].start_us // DAY_US)
    assert engine.state.idle_days.get(day, 0) / 1e6 == pytest.approx(
        sum(float(ref["idle_s"] or 0) for ref in expected), abs=1e-6
    )


def test_the_long_gap_gives_one_trip_with_its_stops_as_idle_time() -> None:
    # Figures of this recording (from the reference above, checked by hand against the
    # speed plot): one trip from 114 s on, two stops inside it.
    (ref,) = reference_trips(drive()["Speed"], 180.0)
    assert ref["end_us"] is None
    assert 4.5 < float(ref["distance_km"] or 0) < 5.1
    assert 20.0 < float(ref["idle_s"] or 0) < 60.0


def test_trip_distance_from_the_trip_odometer_matches_its_increase() -> None:
    samples = drive()
    _, trips = engine_trips(drive_config(180.0, odometer=True))
    (trip,) = trips
    t, metres = samples["DistanceTrip"]
    at_start = metres[np.searchsorted(t, trip.start_us, side="right") - 1]
    assert trip.distance_km == pytest.approx((metres[-1] - at_start) / 1000, rel=1e-9)
    # The GNSS odometer and the integral of GNSS speed are two measures of one drive.
    (by_speed,) = reference_trips(samples["Speed"], 180.0)
    assert trip.distance_km == pytest.approx(float(by_speed["distance_km"] or 0), rel=0.02)


def test_geofence_exit_on_the_drive() -> None:
    samples = drive()
    lat_t, lat = samples["Latitude"]
    lon_t, lon = samples["Longitude"]
    assert np.array_equal(lat_t, lon_t)
    centre, radius = (float(lat[0]), float(lon[0])), 300.0
    fence = {"kind": "circle", "name": "home", "latitude": centre[0], "longitude": centre[1]}
    cfg = drive_config(180.0, geofences=[{**fence, "radius_m": radius}])
    events = RuleEngine.new(cfg, "drive").process(samples).events
    fences = [(e.kind, e.ts_us) for e in events if e.kind.startswith("geofence")]
    # Equirectangular distance is exact enough at 300 m.
    dy = np.radians(lat - centre[0]) * 6_371_008.8
    dx = np.radians(lon - centre[1]) * 6_371_008.8 * np.cos(np.radians(centre[0]))
    outside = np.hypot(dx, dy) > radius
    changes = np.flatnonzero(outside[1:] != outside[:-1]) + 1
    expected = [
        (EventKind.GEOFENCE_EXIT if outside[i] else EventKind.GEOFENCE_ENTER, int(lon_t[i]))
        for i in changes
    ]
    assert fences == expected
    assert fences[0][0] is EventKind.GEOFENCE_EXIT


def test_long_idling_on_the_truck_fires_once_after_a_minute() -> None:
    samples = truck()
    cfg = RuleConfig.model_validate(
        {
            "signals": {
                "speed": {"name": "WheelBasedVehicleSpeed", "unit": "km/h"},
                "engine_speed": {"name": "EngineSpeed", "unit": "rpm"},
                "battery_voltage": None,
            },
            "thresholds": {"idle_minutes": 1.0},
        }
    )
    rpm_t, rpm = samples["EngineSpeed"]
    speed_t, speed = samples["WheelBasedVehicleSpeed"]
    # The recording: idling throughout.
    assert rpm.min() > 600
    assert speed.max() == 0.0
    engine = RuleEngine.new(cfg, "truck")
    out = engine.process(samples)
    # Idle from the moment both the engine speed and the vehicle speed are known.
    idle_start = max(rpm_t[0], speed_t[0])
    timeline = np.union1d(rpm_t, speed_t)
    fires_at = timeline[np.searchsorted(timeline, idle_start + 60_000_000)]
    assert [(e.kind, e.ts_us) for e in out.events] == [(EventKind.LONG_IDLE, fires_at)]
    assert out.events[0].details["idle_since_us"] == idle_start
    assert out.trips == []
    (day,) = out.idle_days
    assert day.idle_s == pytest.approx((timeline[-1] - idle_start) / 1e6, abs=1e-6)
    assert 120 < day.idle_s < 130
    assert day.idle_fuel_l == pytest.approx(day.idle_s / 3600 * 0.8)


def test_processing_in_pieces_with_a_snapshot_between_equals_one_go() -> None:
    samples = drive()
    cfg = drive_config(10.0, geofences=[{"kind": "circle", "name": "home", "latitude": 56.0987,
                                         "longitude": 10.2183, "radius_m": 300}])  # fmt: skip
    whole = RuleEngine.new(cfg, "drive")
    one_go = whole.process(samples)
    t = samples["Speed"][0]
    cuts = [int(t[0] + (t[-1] - t[0]) * f) for f in (0.13, 0.3, 0.31, 0.5, 0.77, 0.9)]
    state = EngineState(vehicle_id="drive")
    events, closed = [], []
    for piece in split(samples, cuts):
        # Each piece by a "new worker" resuming from the stored JSON snapshot.
        state = EngineState.from_json(json.loads(json.dumps(state.to_json())))
        engine = RuleEngine(cfg, state)
        out = engine.process(piece)
        events += out.events
        closed += [trip for trip in out.trips if trip.end_us is not None]
        state = engine.state
    assert events == one_go.events
    assert len(events) > 5
    assert closed == [trip for trip in one_go.trips if trip.end_us is not None]
    assert state.to_json() == whole.state.to_json()
    # The same batch from the same snapshot again: the same event ids.
    again = RuleEngine(cfg, EngineState(vehicle_id="drive")).process(samples)
    assert [e.id for e in again.events] == [e.id for e in one_go.events]
