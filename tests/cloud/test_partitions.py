"""Samples partitioned by day on PostgreSQL: made ahead, made on demand, never missing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from cloud.domain import CatalogMap, SampleColumns, SignalDef
from cloud.store import TenantStore
from cloud.store.dialect import DAY_US
from tests.cloud.pg import partition_counts, partitions

pytestmark = pytest.mark.postgres

CAR = "car-1"
SIGNALS = [SignalDef(0, "powertrain", "Engine", "Speed"), SignalDef(1, "body", "Door", "Open")]


def day_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_US


@pytest.fixture
def store(postgres_tenant_url: str) -> Iterator[TenantStore]:
    store = TenantStore.open(postgres_tenant_url)
    yield store
    store.close()


@pytest.fixture
def catalog(store: TenantStore) -> CatalogMap:
    store.enroll_vehicle(CAR)
    return store.register_catalog(CAR, "agent/1.0", 1, SIGNALS)


def batch(catalog: CatalogMap, times: list[int]) -> SampleColumns:
    ids = [catalog.signal_ids[i % 2] for i in range(len(times))]
    return SampleColumns(ids, times, [float(i) for i in range(len(times))])


def test_samples_are_partitioned_by_range_of_time(store: TenantStore) -> None:
    with store.engine.connect() as conn:
        key = conn.execute(text("SELECT pg_get_partkeydef('samples'::regclass)")).scalar_one()
    assert key == "RANGE (ts_us)"
    bounds = partitions(store.engine)
    assert bounds["samples_before_2000"] == (
        f"FOR VALUES FROM (MINVALUE) TO ('{day_us(date(2000, 1, 1))}')"
    )
    assert bounds["samples_from_2100"] == (
        f"FOR VALUES FROM ('{day_us(date(2100, 1, 1))}') TO (MAXVALUE)"
    )


def test_today_and_tomorrow_are_made_ahead_by_the_first_batch(
    store: TenantStore, catalog: CatalogMap
) -> None:
    today = datetime.now(UTC).date()
    store.ingest(CAR, 1, batch(catalog, []))
    names = set(partitions(store.engine))
    assert {f"samples_p{today:%Y%m%d}", f"samples_p{today + timedelta(days=1):%Y%m%d}"} <= names


def test_a_day_without_a_partition_gets_one_and_each_sample_its_day(
    store: TenantStore, catalog: CatalogMap
) -> None:
    # A replay of an old log across midnight, a logger counting from 1970, a clock gone wild.
    midnight = day_us(date(2015, 6, 2))
    times = [midnight - 2, midnight - 1, midnight, midnight + 1, 5_000, day_us(date(2150, 1, 1))]
    result = store.ingest(CAR, 1, batch(catalog, times))
    assert (result.stored, result.duplicate) == (6, False)
    assert partitions(store.engine)["samples_p20150602"] == (
        f"FOR VALUES FROM ('{midnight}') TO ('{midnight + DAY_US}')"
    )
    assert partition_counts(store.engine) == {
        "samples_p20150601": 2,
        "samples_p20150602": 2,
        "samples_before_2000": 1,
        "samples_from_2100": 1,
    }
    # Even positions are Speed: read back in time order across the partitions.
    speed = store.samples(CAR, "powertrain", "Engine", "Speed")
    assert speed == [(5_000, 4.0), (midnight - 2, 0.0), (midnight, 2.0)]


def test_stores_of_two_processes_making_one_day_at_once_both_store(
    store: TenantStore, catalog: CatalogMap, postgres_tenant_url: str
) -> None:
    others = [TenantStore.open(postgres_tenant_url) for _ in range(3)]
    day = day_us(date(2016, 2, 29))
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(
                pool.map(
                    lambda n: (store, *others)[n].ingest(CAR, n + 1, batch(catalog, [day + n])),
                    range(4),
                )
            )
    finally:
        for other in others:
            other.close()
    assert [result.stored for result in results] == [1, 1, 1, 1]
    assert partition_counts(store.engine) == {"samples_p20160229": 4}


def test_a_partition_dropped_behind_the_stores_back_is_made_again(
    store: TenantStore, catalog: CatalogMap
) -> None:
    day = day_us(date(2019, 3, 1))
    store.ingest(CAR, 1, batch(catalog, [day]))
    with store.engine.connect() as conn:
        # As another process's retention job would.
        conn.execute(text("DROP TABLE samples_p20190301"))
        conn.commit()
    result = store.ingest(CAR, 2, batch(catalog, [day + 1, day + 2]))
    assert (result.stored, result.duplicate) == (2, False)
    assert partition_counts(store.engine) == {"samples_p20190301": 2}
    assert store.batch_count(CAR) == 2
