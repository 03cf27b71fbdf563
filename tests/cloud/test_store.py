"""TenantStore contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from cloud.domain import CatalogMap, LatestValue, SampleColumns, SignalDef, SignalStats
from cloud.errors import StoreError, UnknownVehicle
from cloud.store import TenantStore
from cloud.store.models import Vehicle, to_signed64, to_unsigned64

CAR = "car-1"
CATALOG_ID = 2**64 - 1
SIGNALS = [
    SignalDef(0, "powertrain", "Engine", "Speed", frame_id=0x100, unit="rpm", maximum=8000.0),
    SignalDef(1, "powertrain", "Engine", "Temp", frame_id=0x100, unit="degC"),
    SignalDef(
        5, "body", "Gear", "Position", frame_id=0x18FEF100, is_extended=True, pgn=0xFEF1,
        choices={0: "P", 3: "D"},
    ),
]  # fmt: skip


@pytest.fixture
def catalog(store: TenantStore) -> CatalogMap:
    store.enroll_vehicle(CAR)
    return store.register_catalog(CAR, "agent/1.0", CATALOG_ID, SIGNALS)


def columns(catalog: CatalogMap, rows: list[tuple[int, int, float]]) -> SampleColumns:
    return SampleColumns(
        signal_ids=[catalog.signal_ids[index] for index, _, _ in rows],
        ts_us=[ts for _, ts, _ in rows],
        values=[value for _, _, value in rows],
    )


def test_enroll_is_idempotent(store: TenantStore) -> None:
    assert not store.is_enrolled(CAR)
    store.enroll_vehicle(CAR)
    store.enroll_vehicle(CAR)
    assert store.is_enrolled(CAR)
    assert not store.is_enrolled("car-2")


def test_a_fleet_enrolls_at_once_next_to_vehicles_enrolled_before(store: TenantStore) -> None:
    store.enroll_vehicle("fleet-0001")
    store.enroll_vehicles([f"fleet-{i:04d}" for i in range(500)])
    assert all(store.is_enrolled(f"fleet-{i:04d}") for i in (0, 1, 250, 499))
    assert not store.is_enrolled("fleet-0500")
    with pytest.raises(ValueError, match="must not be empty"):
        store.enroll_vehicles(["fleet-9999", ""])
    assert not store.is_enrolled("fleet-9999")  # nothing of a refused list is enrolled


def test_catalog_maps_indices_and_shares_signal_definitions(
    store: TenantStore, catalog: CatalogMap
) -> None:
    assert sorted(catalog.signal_ids) == [0, 1, 5]
    assert len(set(catalog.signal_ids.values())) == 3
    store.enroll_vehicle("car-2")
    other = store.register_catalog(
        "car-2",
        "agent/2.0",
        1,
        [SignalDef(3, "powertrain", "Engine", "Speed"), SignalDef(4, "chassis", "Abs", "Slip")],
    )
    # Same (bus, message, name): same tenant-wide signal, whatever the agent's index.
    assert other.signal_ids[3] == catalog.signal_ids[0]
    assert other.signal_ids[4] not in catalog.signal_ids.values()
    # Registering again is harmless and stable.
    assert store.register_catalog(CAR, "agent/1.0", CATALOG_ID, SIGNALS) == catalog


def test_catalog_id_is_stored_signed_and_read_back_unsigned(
    store: TenantStore, catalog: CatalogMap
) -> None:
    with store.engine.connect() as conn:
        stored = conn.execute(select(Vehicle.catalog_id).where(Vehicle.vehicle_id == CAR)).scalar()
    assert stored == -1
    assert to_unsigned64(stored) == CATALOG_ID


def test_a_session_opens_with_the_catalog_map_and_the_last_sequence(
    store: TenantStore, catalog: CatalogMap
) -> None:
    store.ingest(CAR, 7, SampleColumns([catalog.signal_ids[0]], [1], [1.0]))
    assert store.open_session(CAR, "agent/1.0", CATALOG_ID, SIGNALS) == (catalog, 7)
    # Another car of the same model: the map kept in memory, its own catalog rows written.
    store.enroll_vehicle("car-2")
    assert store.open_session("car-2", "agent/1.0", CATALOG_ID, SIGNALS) == (catalog, 0)
    assert store.vehicle_catalog("car-2") == store.vehicle_catalog(CAR)
    # The same claimed catalog id with other signals is mapped by its signals, not the id.
    swapped = [SignalDef(0, s.bus, s.message, s.name) for s in SIGNALS[1:2]]
    other, _ = store.open_session("car-2", "agent/1.0", CATALOG_ID, swapped)
    assert other.signal_ids == {0: catalog.signal_ids[SIGNALS[1].index]}


def test_unknown_vehicle_cannot_register_or_ingest(store: TenantStore) -> None:
    with pytest.raises(UnknownVehicle, match="'ghost' is not enrolled"):
        store.register_catalog("ghost", "x", 1, SIGNALS)
    with pytest.raises(UnknownVehicle):
        store.ingest("ghost", 1, SampleColumns([], [], []))


def test_ingest_stores_exactly_what_was_sent(store: TenantStore, catalog: CatalogMap) -> None:
    rows = [(0, 1_000, 800.0), (1, 1_500, 90.5), (0, 2_000, 850.0), (5, 2_500, 3.0)]
    result = store.ingest(CAR, 1, columns(catalog, rows))
    assert (result.stored, result.duplicate) == (4, False)
    assert store.samples(CAR, "powertrain", "Engine", "Speed") == [(1_000, 800.0), (2_000, 850.0)]
    assert store.samples(CAR, "body", "Gear", "Position") == [(2_500, 3.0)]
    assert store.count_samples() == store.count_samples(CAR) == 4
    assert store.count_samples("car-2") == 0
    assert store.last_sequence(CAR) == 1
    assert store.batch_count(CAR) == 1


def test_duplicate_sequence_is_acknowledged_and_not_stored(
    store: TenantStore, catalog: CatalogMap
) -> None:
    first = columns(catalog, [(0, 1_000, 1.0), (1, 1_000, 2.0)])
    assert not store.ingest(CAR, 7, first).duplicate
    # Even with different content, sequence 7 is already stored: nothing is written.
    again = store.ingest(CAR, 7, columns(catalog, [(0, 9_000, 99.0)]))
    assert (again.stored, again.duplicate) == (0, True)
    assert store.count_samples(CAR) == 2
    assert store.batch_count(CAR) == 1
    assert store.last_sequence(CAR) == 7


def test_empty_batch_takes_its_sequence(store: TenantStore, catalog: CatalogMap) -> None:
    assert store.ingest(CAR, 1, SampleColumns([], [], [])).stored == 0
    assert store.ingest(CAR, 1, SampleColumns([], [], [])).duplicate
    assert store.last_sequence(CAR) == 1


def test_latest_state_keeps_the_newest_even_when_batches_arrive_late(
    store: TenantStore, catalog: CatalogMap
) -> None:
    store.ingest(CAR, 2, columns(catalog, [(0, 5_000, 900.0), (5, 5_000, 3.0)]))
    # Batch 1 is older (by CAN time) but committed later; it must not win.
    store.ingest(CAR, 1, columns(catalog, [(0, 1_000, 700.0), (1, 1_000, 80.0), (5, 900, 0.0)]))
    assert store.latest(CAR) == [
        LatestValue("body", "Gear", "Position", "", 5_000, 3.0, label="D"),
        LatestValue("powertrain", "Engine", "Speed", "rpm", 5_000, 900.0),
        LatestValue("powertrain", "Engine", "Temp", "degC", 1_000, 80.0),
    ]
    assert store.last_sequence(CAR) == 2


def test_latest_state_within_an_unordered_batch(store: TenantStore, catalog: CatalogMap) -> None:
    # Two buses interleaved: timestamps go back and forth inside the batch.
    rows = [(0, 3_000, 3.0), (0, 1_000, 1.0), (1, 2_000, 20.0), (0, 3_000, 33.0), (1, 500, 5.0)]
    store.ingest(CAR, 1, columns(catalog, rows))
    latest = {(item.signal, item.ts_us, item.value) for item in store.latest(CAR)}
    assert latest == {("Speed", 3_000, 33.0), ("Temp", 2_000, 20.0)}


def test_signal_stats_come_from_sql(store: TenantStore, catalog: CatalogMap) -> None:
    store.ingest(CAR, 1, columns(catalog, [(0, i, float(i)) for i in range(1, 11)]))
    assert store.signal_stats(CAR, "Engine", "Speed") == SignalStats(10, 5.5, 1.0, 10.0)
    assert store.signal_stats(CAR, "Engine", "Speed", bus="body") == SignalStats(
        0, None, None, None
    )
    assert store.signal_stats(CAR, "Engine", "Temp") == SignalStats(0, None, None, None)


def test_failed_ingest_rolls_back_the_ledger_too(store: TenantStore, catalog: CatalogMap) -> None:
    broken = SampleColumns(signal_ids=[catalog.signal_ids[0], 999_999], ts_us=[1, 2], values=[1, 2])
    with pytest.raises(StoreError, match="cannot ingest batch"):
        store.ingest(CAR, 1, broken)
    assert store.batch_count(CAR) == 0
    assert store.count_samples() == 0
    # The retry of the same sequence is stored, not mistaken for a duplicate.
    retry = store.ingest(CAR, 1, columns(catalog, [(0, 1, 1.0)]))
    assert (retry.stored, retry.duplicate) == (1, False)


def test_concurrent_ingest_stores_each_sequence_once(
    store: TenantStore, catalog: CatalogMap
) -> None:
    sequences = list(range(1, 21)) * 3
    batch = columns(catalog, [(0, 1_000 + i, float(i)) for i in range(50)])
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda seq: (seq, store.ingest(CAR, seq, batch)), sequences))
    stored = Counter(seq for seq, result in results if not result.duplicate)
    assert stored == Counter(range(1, 21))
    assert store.count_samples(CAR) == 20 * 50
    assert store.batch_count(CAR) == 20
    assert store.last_sequence(CAR) == 20


def test_stores_of_several_processes_racing_with_one_batch_store_it_once(
    store: TenantStore, catalog: CatalogMap, tenant_url: str
) -> None:
    # Several gateway processes, each with its own store, get the same resent batches.
    batch = columns(catalog, [((0, 1, 5)[i % 3], 2_000 + i, float(i)) for i in range(200)])
    others = [TenantStore.open(tenant_url) for _ in range(3)]
    stores = [store, *others]
    jobs = [(stores[n % 4], seq) for seq in range(1, 9) for n in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda job: (job[1], job[0].ingest(CAR, job[1], batch)), jobs))
    finally:
        for other in others:
            other.close()
    assert sorted(seq for seq, result in results if not result.duplicate) == list(range(1, 9))
    assert all(result.stored == 0 for _, result in results if result.duplicate)
    assert store.count_samples(CAR) == 8 * 200
    assert store.batch_count(CAR) == 8


def test_extreme_timestamps_and_values_come_back_exactly(
    store: TenantStore, catalog: CatalogMap
) -> None:
    rows = [(0, -(2**63), -1.5e308), (0, -1, 5e-324), (0, 0, 2.0**53 + 2), (0, 2**63 - 1, 1e308)]
    assert store.ingest(CAR, 1, columns(catalog, rows)).stored == 4
    assert store.samples(CAR, "powertrain", "Engine", "Speed") == [(ts, v) for _, ts, v in rows]


def test_closed_store_refuses_work(store: TenantStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count_samples()


@pytest.mark.parametrize(
    ("unsigned", "signed"), [(0, 0), (2**63 - 1, 2**63 - 1), (2**63, -(2**63)), (2**64 - 1, -1)]
)
def test_signed64_round_trip(unsigned: int, signed: int) -> None:
    assert to_signed64(unsigned) == signed
    assert to_unsigned64(signed) == unsigned


@pytest.mark.parametrize("value", [-1, 2**64])
def test_signed64_refuses_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="unsigned 64-bit"):
        to_signed64(value)
