"""What only PostgreSQL stores do: day partitions of samples, binary COPY, pipelined batches.

Samples are range-partitioned by ``ts_us``, one partition per UTC day
(``samples_pYYYYMMDD``) from 2000 to 2100, and two catch-all partitions below
and above (a logger without a real-time clock counts from 1970). A day is the
unit of retention (dropping a partition frees its space at once, where
deleting rows leaves work for VACUUM) and keeps each partition's index small
enough to stay in memory while a fleet writes into it. Partitions are created
ahead by the store: today's and tomorrow's, and any other day (a replay of an
old log) when a batch first reaches it, before the batch's transaction
begins. They are made as a plain table and then attached, which locks the
parent only against other schema changes, never against concurrent COPYs
(``CREATE TABLE ... PARTITION OF`` would lock out every writer of the tenant
until the commit).

A batch's transaction (``PostgresBatch``) runs on psycopg's own connection
in three round trips: BEGIN with the ledger row (pipelined), the samples'
binary COPY, and every remaining statement with the COMMIT (pipelined). The
COPY data is PostgreSQL's binary format, built from the batch's columns with
numpy: one structured array whose rows are exactly the wire rows (field
count, then length and big-endian value of each field), so no Python code
runs per sample (psycopg's ``write_row`` would).

psycopg is imported only when a PostgreSQL store writes (the ``postgres`` extra).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert, Update

from cloud.domain import SampleColumns

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "COPY_SAMPLES",
    "DAY_US",
    "MissingPartition",
    "Params",
    "PostgresBatch",
    "SamplePartitions",
    "Statement",
    "copy_data",
    "create_catch_all_partitions",
    "create_day_partitions",
    "is_sample_partition",
    "schema_lock",
]

#: Advisory lock keys: schema changes ("telehub" in ASCII), and creating partitions.
_SCHEMA_LOCK = int.from_bytes(b"telehub", "big")
_PARTITION_LOCK = _SCHEMA_LOCK - 1

#: Microseconds in a day: partitions hold one UTC day of CAN time each.
DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
#: Days (since 1970-01-01) that get partitions of their own: 2000-01-01 up to 2100-01-01.
_FIRST_DAY = (date(2000, 1, 1) - _EPOCH).days
_END_DAY = (date(2100, 1, 1) - _EPOCH).days
_DAY_PARTITION = re.compile(r"samples_p(\d{8})")
_CATCH_ALL = ("samples_before_2000", "samples_from_2100")


def schema_lock(conn: Connection) -> None:
    """Take the database's schema lock until ``conn``'s transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})


# ---------------------------------------------------------------------- sample partitions


def is_sample_partition(name: str) -> bool:
    """Whether the table ``name`` is a partition of ``samples`` (data, not schema)."""
    return _DAY_PARTITION.fullmatch(name) is not None or name in _CATCH_ALL


def create_catch_all_partitions(conn: Connection) -> None:
    """The partitions below and above the days that get their own (migrations only)."""
    below, above = _CATCH_ALL
    conn.execute(
        text(
            f"CREATE TABLE {below} PARTITION OF samples "
            f"FOR VALUES FROM (MINVALUE) TO ({_FIRST_DAY * DAY_US})"
        )
    )
    conn.execute(
        text(
            f"CREATE TABLE {above} PARTITION OF samples "
            f"FOR VALUES FROM ({_END_DAY * DAY_US}) TO (MAXVALUE)"
        )
    )


def create_day_partitions(conn: Connection, days: Iterable[int]) -> None:
    """Create and attach the partitions of ``days`` (since 1970-01-01, UTC) that get one.

    Days outside 2000-2099 are skipped: the catch-all partitions hold them.
    """
    for day in sorted(set(days)):
        if not _FIRST_DAY <= day < _END_DAY:
            continue
        name = _partition_name(day)
        conn.execute(text(f"CREATE TABLE {name} (LIKE samples)"))
        # Attaching builds the partition's share of the partitioned index too.
        conn.execute(
            text(
                f"ALTER TABLE samples ATTACH PARTITION {name} "
                f"FOR VALUES FROM ({day * DAY_US}) TO ({(day + 1) * DAY_US})"
            )
        )


def _partition_name(day: int) -> str:
    return f"samples_p{_EPOCH + timedelta(days=day):%Y%m%d}"


def _partition_day(name: str) -> int | None:
    match = _DAY_PARTITION.fullmatch(name)
    if match is None:
        return None
    return (datetime.strptime(match[1], "%Y%m%d").date() - _EPOCH).days


class SamplePartitions:
    """The day partitions of ``samples`` that exist, as far as this process knows.

    ``ensure`` makes sure the days of a batch (and today and tomorrow) have
    their partitions: a lookup in a set once they are known, a short
    transaction of its own when one is missing. Several processes may race to
    create a day: an advisory lock serialises them and the loser finds the
    partition in the catalog. On SQLite there is nothing to do.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._enabled = engine.dialect.name == "postgresql"
        self._known: frozenset[int] = frozenset()
        self._lock = threading.Lock()

    def ensure(self, ts_us: Sequence[int]) -> None:
        """Create whichever partitions the timestamps ``ts_us`` (and the next day) lack."""
        if not self._enabled:
            return
        today = int(time.time() * 1_000_000) // DAY_US
        wanted = {today, today + 1}
        times = np.asarray(ts_us, dtype=np.int64)
        if len(times):
            first, last = int(times.min()) // DAY_US, int(times.max()) // DAY_US
            # A batch covers a second or so: every day from its first to its last
            # is cheaper than finding the distinct ones, unless the clock jumped.
            days = range(first, last + 1) if last - first < 3 else np.unique(times // DAY_US)
            wanted.update(int(day) for day in days)
        missing = {day for day in wanted if _FIRST_DAY <= day < _END_DAY} - self._known
        if missing:
            self._create(missing)

    def forget(self) -> None:
        """Drop what is known (a partition was dropped behind this process's back)."""
        self._known = frozenset()

    def _create(self, missing: set[int]) -> None:
        with self._lock, self._engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK})
            names = conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'samples'::regclass"
                )
            ).scalars()
            existing = {day for day in map(_partition_day, names) if day is not None}
            create_day_partitions(conn, missing - existing)
            conn.commit()
            self._known = self._known | existing | missing


class MissingPartition(Exception):
    """A sample's day had no partition after all (dropped behind this process's back)."""


# ---------------------------------------------------------------------- a batch's transaction

#: The COPY a batch's samples go in by (binary rows of :func:`copy_data`).
COPY_SAMPLES = "COPY samples (vehicle_id, signal_id, ts_us, value) FROM STDIN (FORMAT BINARY)"
#: Signature, flags (no OIDs), header extension length: 0.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
#: A field count of -1 ends the data.
_COPY_TRAILER = b"\xff\xff"
#: One binary COPY row of ``samples``: the field count, then each field's length and value.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("vehicle_len", ">i4"), ("vehicle_id", ">i4"),
        ("signal_len", ">i4"), ("signal_id", ">i4"),
        ("ts_len", ">i4"), ("ts_us", ">i8"),
        ("value_len", ">i4"), ("value", ">f8"),
    ]
)  # fmt: skip
_COPY_CONSTANTS = {
    "fields": 4, "vehicle_len": 4, "signal_len": 4, "ts_len": 8, "value_len": 8,
}  # fmt: skip

#: A statement of a batch's transaction, and its parameters (a sequence: executemany).
Statement = Insert | Update
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def copy_data(vehicle_pk: int, samples: SampleColumns) -> bytes:
    """The batch's samples as PostgreSQL binary COPY data (header, rows, trailer)."""
    rows = np.empty(len(samples), dtype=_COPY_ROW)
    for name, value in _COPY_CONSTANTS.items():
        rows[name] = value
    rows["vehicle_id"] = vehicle_pk
    rows["signal_id"] = samples.signal_ids
    rows["ts_us"] = samples.ts_us
    rows["value"] = samples.values
    return b"".join((_COPY_HEADER, rows.tobytes(), _COPY_TRAILER))


class PostgresBatch:
    """One batch's transaction on psycopg's connection (see ``cloud.store.dialect.Batch``).

    Statements are SQLAlchemy Core, compiled by ``sql`` (once per statement
    and parameter names); driver errors leave as SQLAlchemy's ``DBAPIError``,
    as they would through SQLAlchemy, so the store translates them alike.
    """

    def __init__(self, conn: Connection, sql: Callable[[Statement, Params], str]) -> None:
        # create_tenant_engine admits no other PostgreSQL driver.
        self._driver = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
        self._sql = sql
        self._queued: list[tuple[str, Params]] = []

    def claim(self, statement: Statement, params: Mapping[str, Any]) -> Any:
        sql = self._sql(statement, params)
        with _driver_errors(sql), self._driver.cursor() as cursor:
            # BEGIN and the statement go together: one round trip.
            with self._driver.pipeline():
                cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else row[0]

    def copy_samples(self, vehicle_pk: int, samples: SampleColumns) -> None:
        import psycopg

        data = copy_data(vehicle_pk, samples)
        try:
            with (
                _driver_errors(COPY_SAMPLES),
                self._driver.cursor() as cursor,
                cursor.copy(COPY_SAMPLES) as copy,
            ):
                copy.write(data)
        except DBAPIError as exc:
            if isinstance(exc.orig, psycopg.errors.CheckViolation):
                # The only check on samples is the partition bound: "no partition found".
                raise MissingPartition(str(exc.orig).splitlines()[0]) from exc
            raise

    def execute(self, statement: Statement, params: Params) -> None:
        # Nothing waits for these: they go with the COMMIT.
        self._queued.append((self._sql(statement, params), params))

    def commit(self) -> None:
        with _driver_errors("COMMIT"), self._driver.cursor() as cursor, self._driver.pipeline():
            for sql, params in self._queued:
                if isinstance(params, Mapping):
                    cursor.execute(sql, params)
                else:
                    cursor.executemany(sql, params)
            self._driver.commit()
        self._queued.clear()


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """psycopg's errors leave as SQLAlchemy's ``DBAPIError``, as through SQLAlchemy itself."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        wrapped = DBAPIError.instance(statement, None, exc, psycopg.Error)
        raise cast(DBAPIError, wrapped) from exc
