"""Fault codes, health, evictions and trigger firings in the store: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from cloud.domain import (
    CatalogMap,
    Eviction,
    FaultCode,
    FaultState,
    HealthReport,
    SampleColumns,
    SignalDef,
    StoredEviction,
    StoredTrigger,
    TriggerMark,
)
from cloud.errors import StoreError, UnknownVehicle
from cloud.store import TenantStore

CAR = "car-1"
OTHER = "car-2"
SIGNALS = [SignalDef(0, "powertrain", "Engine", "Speed"), SignalDef(1, "body", "Door", "Open")]


@pytest.fixture
def catalog(store: TenantStore) -> CatalogMap:
    store.enroll_vehicle(CAR)
    store.enroll_vehicle(OTHER)
    store.register_catalog(OTHER, "agent/1.0", 2, SIGNALS)
    return store.register_catalog(CAR, "agent/1.0", 1, SIGNALS)


def _fault(code: str, state: FaultState, ts_us: int, *, source: int = 0) -> FaultCode:
    return FaultCode("j1939_dm1", "powertrain", source, code, state, ts_us, spn=520, fmi=3)


def test_a_resent_fault_report_stores_nothing_twice(
    store: TenantStore, catalog: CatalogMap
) -> None:
    codes = [_fault("SPN 520 FMI 3", FaultState.SET, 100), _fault("P0301", FaultState.SET, 100)]
    assert store.store_fault_report(CAR, 1, codes) == 2
    assert store.store_fault_report(CAR, 1, codes) == 0
    # The same events in another report (the car's outbox was wiped): still once.
    assert store.store_fault_report(CAR, 7, [*codes, _fault("P0301", FaultState.CLEARED, 200)]) == 1
    history = store.fault_history(CAR)
    assert [(e.fault.code, e.fault.state, e.fault.ts_us) for e in history] == [
        ("P0301", FaultState.CLEARED, 200),
        ("P0301", FaultState.SET, 100),
        ("SPN 520 FMI 3", FaultState.SET, 100),
    ]
    assert history[0].report_id == 7
    assert history[2].fault == codes[0]
    assert store.fault_history(CAR, limit=1)[0].fault.ts_us == 200


def test_active_faults_are_those_whose_newest_event_set_them(
    store: TenantStore, catalog: CatalogMap
) -> None:
    store.store_fault_report(
        CAR,
        1,
        [
            _fault("A", FaultState.SET, 100),
            _fault("A", FaultState.CLEARED, 200),
            _fault("B", FaultState.SET, 150),
            _fault("B", FaultState.SET, 150, source=9),  # the same code from another ECU
            _fault("C", FaultState.CLEARED, 100),
            _fault("C", FaultState.SET, 300),
        ],
    )
    active = store.active_faults(CAR)
    assert [(e.fault.code, e.fault.source, e.fault.ts_us) for e in active] == [
        ("C", 0, 300),
        ("B", 0, 150),
        ("B", 9, 150),
    ]
    assert store.active_faults(OTHER) == []


def test_faults_need_an_enrolled_vehicle(store: TenantStore) -> None:
    with pytest.raises(UnknownVehicle):
        store.store_fault_report("ghost", 1, [_fault("A", FaultState.SET, 1)])


def test_every_health_report_is_kept_and_the_newest_read(
    store: TenantStore, catalog: CatalogMap
) -> None:
    assert store.latest_health(CAR) is None
    store.record_health(CAR, HealthReport(time_us=1, decode_errors=1))
    big = 2**63 - 1
    store.record_health(
        CAR,
        HealthReport(
            time_us=2,
            uptime_ms=big,
            frames_by_bus={"powertrain": 10, "body": 3},
            ack_latency_p99_ms=12.5,
            counters={"purged": 4},
        ),
    )
    latest = store.latest_health(CAR)
    assert latest is not None
    assert (latest.time_us, latest.uptime_ms, latest.decode_errors) == (2, big, 0)
    assert latest.frames_by_bus == {"powertrain": 10, "body": 3}
    assert (latest.ack_latency_p99_ms, latest.counters) == (12.5, {"purged": 4})
    assert latest.received_at is not None
    assert store.health_report_count(CAR) == 2
    assert store.health_report_count(OTHER) == 0


def test_evictions_and_triggers_are_stored_with_their_batch_once(
    store: TenantStore, catalog: CatalogMap
) -> None:
    speed, door = catalog.signal_ids[0], catalog.signal_ids[1]
    samples = SampleColumns([speed], [1_000], [1.0])
    evictions = [Eviction(speed, 40, 10, 90), Eviction(door, 2, 50, 60)]
    triggers = [TriggerMark("hard-brake", 1_000, 3)]
    result = store.ingest(CAR, 5, samples, evictions=evictions, triggers=triggers)
    assert (result.stored, result.duplicate) == (1, False)
    again = store.ingest(CAR, 5, samples, evictions=evictions, triggers=triggers)
    assert again.duplicate
    assert store.evictions(CAR) == [
        StoredEviction(5, "powertrain", "Engine", "Speed", 40, 10, 90),
        StoredEviction(5, "body", "Door", "Open", 2, 50, 60),
    ]
    assert store.trigger_firings(CAR) == [StoredTrigger(5, "hard-brake", 1_000, 3)]
    assert store.evictions(OTHER) == []
    assert store.trigger_firings(OTHER) == []


def test_a_batch_that_fails_stores_none_of_its_evictions(
    store: TenantStore, catalog: CatalogMap
) -> None:
    with pytest.raises(StoreError):
        store.ingest(
            CAR,
            1,
            SampleColumns([], [], []),
            evictions=[Eviction(999_999, 1, 0, 0)],  # no such signal
            triggers=[TriggerMark("t", 0, 1)],
        )
    assert store.evictions(CAR) == []
    assert store.trigger_firings(CAR) == []
    assert store.batch_count(CAR) == 0
