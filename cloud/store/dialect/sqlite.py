"""What only SQLite stores do: connection settings, the schema lock, batches through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.sql.dml import Insert, Update

from cloud.domain import SampleColumns

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "CoreBatch", "on_connect", "schema_transaction"]

#: How long a SQLite writer waits for another writer's transaction (two streams
#: of one vehicle, or several vehicles of one tenant) before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Settings of every new connection (SQLAlchemy's ``connect`` event)."""
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run beside the single writer; NORMAL still survives a
        # process crash (only an OS crash may lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding SQLite's write lock from its start (see the package's version)."""
    with engine.connect() as conn:
        # pysqlite runs DDL outside any transaction of its own: drive it by hand,
        # taking the write lock up front (a second opener waits for busy_timeout).
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


class CoreBatch:
    """One batch's transaction through SQLAlchemy Core (see ``cloud.store.dialect.Batch``)."""

    def __init__(self, conn: Connection, samples: Table) -> None:
        self._conn = conn
        self._samples = samples

    def claim(self, statement: Insert | Update, params: Mapping[str, Any]) -> Any:
        return self._conn.execute(statement, params).scalar()

    def copy_samples(self, vehicle_pk: int, samples: SampleColumns) -> None:
        self._conn.execute(
            self._samples.insert(),
            [
                {"vehicle_id": vehicle_pk, "signal_id": sid, "ts_us": ts, "value": value}
                for sid, ts, value in zip(
                    samples.signal_ids, samples.ts_us, samples.values, strict=True
                )
            ],
        )

    def execute(self, statement: Insert | Update, params: Any) -> None:
        self._conn.execute(statement, params)

    def commit(self) -> None:
        self._conn.commit()
