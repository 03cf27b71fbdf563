"""Retention in the store: raw samples folded into minutes exactly once, expiry per data class."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from cloud.domain import SampleColumns, SignalDef
from cloud.errors import UnknownSignal
from cloud.store import TenantStore
from cloud.store.base import table
from cloud.store.models import EventRow, TripRow
from cloud.store.retention import MINUTE_US

CAR = "car-1"
T0 = 1_765_000_000_000_000 - 1_765_000_000_000_000 % MINUTE_US  # a minute's start, Dec 2025
SIGNALS = [SignalDef(0, "pt", "Engine", "Speed"), SignalDef(1, "pt", "Engine", "Temp")]


@pytest.fixture
def ids(store: TenantStore) -> dict[int, int]:
    store.enroll_vehicle(CAR)
    return dict(store.register_catalog(CAR, "test", 1, SIGNALS).signal_ids)


def _ingest(store: TenantStore, seq: int, rows: list[tuple[int, int, float]]) -> None:
    index, ts, values = zip(*rows, strict=True)
    store.ingest(CAR, seq, SampleColumns(list(index), list(ts), list(values)))


def _expected(
    rows: list[tuple[int, int, float]], signal: int
) -> dict[int, tuple[int, float, float, float]]:
    minutes: dict[int, list[float]] = {}
    for sid, ts, value in rows:
        if sid == signal:
            minutes.setdefault(ts - ts % MINUTE_US, []).append(value)
    return {m: (len(v), min(v), max(v), statistics.fmean(v)) for m, v in minutes.items()}


def _history(
    store: TenantStore, start: int, end: int
) -> dict[int, tuple[int, float, float, float]]:
    return {
        m.minute_us: (m.count, m.minimum, m.maximum, m.mean)
        for m in store.history(CAR, "pt", "Engine", "Speed", start, end)
    }


def test_expired_samples_live_on_as_exact_minutes(store: TenantStore, ids: dict[int, int]) -> None:
    rng = random.Random(5)
    rows = [
        (ids[i % 2], T0 + rng.randrange(0, 10 * MINUTE_US), round(rng.uniform(-50, 50), 3))
        for i in range(3_000)
    ]
    _ingest(store, 1, rows)
    speed = ids[0]
    expected = _expected([(s, t, v) for s, t, v in rows], speed)
    before = _history(store, T0, T0 + 10 * MINUTE_US)  # all raw, aggregated on the fly
    assert before.keys() == expected.keys()
    cutoff = T0 + 6 * MINUTE_US
    done = store.expire_samples(cutoff)
    assert done.samples == sum(1 for _, t, _ in rows if t < cutoff)
    assert store.count_samples() == 3_000 - done.samples
    after = _history(store, T0, T0 + 10 * MINUTE_US)  # aggregates below, raw above the cutoff
    for minute, (count, low, high, mean) in expected.items():
        assert after[minute][:3] == (count, low, high)
        assert after[minute][3] == pytest.approx(mean, rel=1e-12)
        assert before[minute][:3] == after[minute][:3]
    # A second run finds nothing more to fold: nothing is counted twice.
    assert store.expire_samples(cutoff).samples == 0
    assert _history(store, T0, T0 + 10 * MINUTE_US) == after


def test_a_late_sample_is_merged_into_its_expired_minute(
    store: TenantStore, ids: dict[int, int]
) -> None:
    speed = ids[0]
    _ingest(store, 1, [(speed, T0 + 1, 10.0), (speed, T0 + 2, 20.0)])
    store.expire_samples(T0 + MINUTE_US)
    # The car was offline: a sample of that minute arrives after it expired.
    _ingest(store, 2, [(speed, T0 + 3, -5.0)])
    assert _history(store, T0, T0 + MINUTE_US) == {T0: (3, -5.0, 20.0, 25.0 / 3)}
    store.expire_samples(T0 + MINUTE_US)
    assert store.count_samples() == 0
    assert _history(store, T0, T0 + MINUTE_US) == {T0: (3, -5.0, 20.0, 25.0 / 3)}


def test_the_history_covers_the_minutes_overlapping_the_range(
    store: TenantStore, ids: dict[int, int]
) -> None:
    speed = ids[0]
    _ingest(store, 1, [(speed, T0 + k * MINUTE_US + 7, float(k)) for k in range(5)])
    got = _history(store, T0 + MINUTE_US + 30_000_000, T0 + 3 * MINUTE_US + 1)
    assert sorted(got) == [T0 + MINUTE_US, T0 + 2 * MINUTE_US, T0 + 3 * MINUTE_US]
    with pytest.raises(UnknownSignal, match="pt/Engine/Nope"):
        store.history(CAR, "pt", "Engine", "Nope", T0, T0 + MINUTE_US)


def test_aggregates_and_events_expire_by_their_own_cutoffs(
    store: TenantStore, ids: dict[int, int]
) -> None:
    speed = ids[0]
    _ingest(store, 1, [(speed, T0 + k * MINUTE_US, 1.0) for k in range(4)])
    store.expire_samples(T0 + 4 * MINUTE_US)
    assert store.expire_aggregates(T0 + 2 * MINUTE_US) == 2
    assert sorted(_history(store, T0, T0 + 4 * MINUTE_US)) == [
        T0 + 2 * MINUTE_US,
        T0 + 3 * MINUTE_US,
    ]
    pk = 1
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        for k in range(3):
            conn.execute(
                insert(table(EventRow)).values(
                    vehicle_id=pk, event_id=f"e{k}", kind="low_fuel", ts_us=T0 + k * MINUTE_US,
                    severity="warning", details={}, sequence=1, created_at=now,
                )
            )  # fmt: skip
        for start, end in ((T0, T0 + 10), (T0 + MINUTE_US, T0 + 3 * MINUTE_US), (T0 + 5, None)):
            conn.execute(
                insert(table(TripRow)).values(
                    vehicle_id=pk, start_us=start, end_us=end, last_us=end or start + 1,
                    distance_km=1.0, duration_s=1.0, idle_s=0.0, idle_fuel_l=0.0, updated_at=now,
                )
            )  # fmt: skip
    assert store.expire_events(T0 + MINUTE_US) == 1
    assert [e.ts_us for e in store.events(CAR)] == [T0 + MINUTE_US, T0 + 2 * MINUTE_US]
    # Trips that ended before the cutoff go; one still under way stays.
    assert store.expire_trips(T0 + 4 * MINUTE_US) == 2
    assert [(t.start_us, t.end_us) for t in store.trips(CAR)] == [(T0 + 5, None)]
