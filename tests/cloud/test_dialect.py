"""The dialect module: PostgreSQL's driver, and the binary COPY data of a batch."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest

from cloud.domain import SampleColumns, SignalDef
from cloud.errors import StoreError
from cloud.store import TenantStore
from cloud.store.dialect import copy_data, create_tenant_engine

SIGNED = [(-(2**63), -1.5e308), (-1, -0.0), (0, 5e-324), (2**63 - 1, 1.0)]


def rows_of(data: bytes) -> list[tuple[int, int, int, float]]:
    """Read PostgreSQL binary COPY data of (int4, int4, int8, float8) rows, as the server does."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    flags, extension = struct.unpack(">ii", data[11:19])
    assert (flags, extension) == (0, 0)
    rows, at = [], 19
    while (fields := struct.unpack(">h", data[at : at + 2])[0]) != -1:
        assert fields == 4
        values = struct.unpack(">iiiiiqid", data[at + 2 : at + 42])
        assert values[0::2] == (4, 4, 8, 8)  # each field's length
        rows.append((values[1], values[3], values[5], values[7]))
        at += 42
    assert at + 2 == len(data)
    return rows


def test_copy_data_holds_each_sample_as_a_binary_row() -> None:
    columns = SampleColumns(
        signal_ids=[7, 2**31 - 1, 1, 3],
        ts_us=[ts for ts, _ in SIGNED],
        values=[value for _, value in SIGNED],
    )
    assert rows_of(copy_data(42, columns)) == [
        (42, 7, -(2**63), -1.5e308),
        (42, 2**31 - 1, -1, -0.0),
        (42, 1, 0, 5e-324),
        (42, 3, 2**63 - 1, 1.0),
    ]
    assert rows_of(copy_data(1, SampleColumns([], [], []))) == []


def test_a_bare_postgresql_url_gets_psycopg_and_other_drivers_are_refused() -> None:
    engine = create_tenant_engine("postgresql://db.example/telehub")
    try:
        assert engine.driver == "psycopg"
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="unsupported PostgreSQL driver 'psycopg2'"):
        create_tenant_engine("postgresql+psycopg2://db.example/telehub")


@pytest.fixture
def pg_store(postgres_tenant_url: str) -> Iterator[TenantStore]:
    store = TenantStore.open(postgres_tenant_url)
    yield store
    store.close()


@pytest.mark.postgres
def test_copy_data_is_what_postgresql_itself_writes(pg_store: TenantStore) -> None:
    pg_store.enroll_vehicle("car-1")
    catalog = pg_store.register_catalog("car-1", "a/1", 1, [SignalDef(0, "b", "m", "s")])
    sid = catalog.signal_ids[0]
    columns = SampleColumns([sid] * len(SIGNED), [ts for ts, _ in SIGNED], [v for _, v in SIGNED])
    assert pg_store.ingest("car-1", 1, columns).stored == len(SIGNED)
    with pg_store.engine.connect() as conn:
        driver = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        with driver.cursor() as cursor:
            pk = cursor.execute("SELECT id FROM vehicles").fetchone()
            assert pk is not None
            with cursor.copy(
                "COPY (SELECT vehicle_id, signal_id, ts_us, value FROM samples ORDER BY ts_us) "
                "TO STDOUT (FORMAT BINARY)"
            ) as copy:
                server = b"".join(bytes(block) for block in copy)
    assert server == copy_data(pk[0], columns)
