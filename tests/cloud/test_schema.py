"""Alembic migrations of the tenant store, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, inspect, select, text

from cloud.store import TenantStore
from cloud.store.dialect import DAY_US, create_tenant_engine
from cloud.store.models import Base, Sample, Signal, Vehicle
from cloud.store.schema import (
    current_revision,
    downgrade_schema,
    head_revision,
    include_name,
    upgrade_schema,
)
from crm.store.tables import metadata as crm_metadata
from tests.cloud.pg import partition_counts


def _every_table() -> MetaData:
    """The cloud's models and the CRM's tables: revision 0005 builds both in a tenant store."""
    every = MetaData()
    for source in (Base.metadata, crm_metadata):
        for table in source.tables.values():
            table.to_metadata(every)
    return every


EVERY_TABLE = _every_table()


@pytest.fixture
def engine(tenant_url: str) -> Iterator[Engine]:
    engine = create_tenant_engine(tenant_url)
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True}
        )
        return list(compare_metadata(context, EVERY_TABLE))


def tables(engine: Engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if include_name(name, "table", {})}


def test_upgrading_an_empty_database_builds_exactly_the_models(engine: Engine) -> None:
    assert tables(engine) == set()
    upgrade_schema(engine)
    assert schema_differences(engine) == []
    assert tables(engine) == set(EVERY_TABLE.tables) | {"alembic_version"}
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()


def test_opening_a_store_migrates_it_and_opening_again_changes_nothing(tenant_url: str) -> None:
    first = TenantStore.open(tenant_url)
    first.enroll_vehicle("car-1")
    first.close()
    second = TenantStore.open(tenant_url)
    try:
        assert second.is_enrolled("car-1")
        assert schema_differences(second.engine) == []
    finally:
        second.close()


def test_a_store_made_before_migrations_keeps_its_rows(engine: Engine) -> None:
    # What create_all built before Alembic: the baseline tables, no version table,
    # and (in the oldest stores) not yet the tables added later.
    upgrade_schema(engine, "0001")
    with engine.connect() as conn:
        for name in ("alembic_version", "agent_health", "fault_codes"):
            conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(insert(Vehicle).values(vehicle_id="car-1", enrolled_at=datetime.now(UTC)))
        conn.commit()
        assert current_revision(conn) is None
    upgrade_schema(engine)
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(Vehicle.vehicle_id)).scalars().all() == ["car-1"]


def test_stores_opened_at_once_migrate_the_database_once(tenant_url: str) -> None:
    def open_and_enroll(number: int) -> bool:
        store = TenantStore.open(tenant_url)
        try:
            store.enroll_vehicle(f"car-{number}")
            return store.is_enrolled(f"car-{number}")
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(open_and_enroll, range(4)))
    engine = create_engine(tenant_url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_nothing_and_upgrade_again(engine: Engine) -> None:
    upgrade_schema(engine)
    downgrade_schema(engine, "base")
    assert tables(engine) == {"alembic_version"}
    with engine.connect() as conn:
        assert current_revision(conn) is None
    upgrade_schema(engine)
    assert schema_differences(engine) == []


def test_samples_of_the_baseline_survive_the_move_to_day_partitions(engine: Engine) -> None:
    upgrade_schema(engine, "0001")
    day = 16_587 * DAY_US  # 2015-06-01
    rows = [(day + 5, 2.0), (day + 5, 1.0), (day - 1, 3.0), (7, 4.0)]
    with engine.connect() as conn:
        conn.execute(
            insert(Vehicle).values(id=1, vehicle_id="car-1", enrolled_at=datetime.now(UTC))
        )
        conn.execute(
            insert(Signal).values(
                id=1, bus="b", message="m", name="s", frame_id=1, is_extended=False,
                unit="", choices={}, is_float=False, pgn=0,
            )
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO samples (vehicle_id, signal_id, ts_us, value) VALUES (1, 1, :t, :v)"),
            [{"t": ts, "v": value} for ts, value in rows],
        )
        conn.commit()
    upgrade_schema(engine)
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        stored = conn.execute(select(Sample.ts_us, Sample.value).order_by(Sample.ts_us)).all()
        assert sorted(stored) == sorted(rows)
    if engine.dialect.name == "postgresql":
        assert partition_counts(engine) == {
            "samples_before_2000": 1,
            "samples_p20150531": 1,
            "samples_p20150601": 2,
        }
