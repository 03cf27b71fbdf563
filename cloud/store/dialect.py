"""Everything that differs between SQLite and PostgreSQL, in one place.

- engine creation: SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and
  foreign keys on every new connection;
- ``INSERT ... ON CONFLICT`` (both dialects spell it alike, but through their own
  ``insert`` constructs);
- the 64-bit surrogate key type (SQLite auto-numbers only ``INTEGER PRIMARY KEY``);
- the schema lock migrations run under (``schema_transaction``): an advisory
  lock on PostgreSQL, SQLite's write lock taken up front (``BEGIN IMMEDIATE``);
- the samples table's partitions (PostgreSQL only, ``SamplePartitions``);
- how a batch's samples are written (``write_samples``): one binary ``COPY``
  on PostgreSQL, an ``executemany`` INSERT on SQLite.

Samples on PostgreSQL are range-partitioned by ``ts_us``, one partition per
UTC day (``samples_pYYYYMMDD``) from 2000 to 2100, and two catch-all
partitions below and above (a logger without a real-time clock counts from
1970). A day is the unit of retention (dropping a partition frees its space
at once, where deleting rows leaves work for VACUUM) and keeps each
partition's index small enough to stay in memory while a fleet writes into
it. Partitions are created ahead by the store: today's and tomorrow's, and
any other day (a replay of an old log) when a batch first reaches it, before
the batch's transaction begins. They are made as a plain table and then
attached, which locks the parent only against other schema changes, never
against concurrent COPYs (``CREATE TABLE ... PARTITION OF`` would lock out
every writer of the tenant until the commit).

Any other dialect is refused when its engine is created, so an unsupported
URL fails at start-up rather than at the first batch. PostgreSQL goes through
psycopg 3 (a bare ``postgresql://`` URL gets it), whose COPY the store uses.

The COPY data is PostgreSQL's binary format, built from the batch's columns
with numpy: one structured array whose rows are exactly the wire rows (field
count, then length and big-endian value of each field), so no Python code
runs per sample. psycopg's ``write_row`` would run Python per row.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from cloud.domain import SampleColumns
from cloud.errors import StoreError

__all__ = [
    "BIG_ID",
    "DAY_US",
    "SQLITE_BUSY_TIMEOUT_MS",
    "MissingPartition",
    "NewestUpsert",
    "SamplePartitions",
    "copy_data",
    "create_catch_all_partitions",
    "create_day_partitions",
    "create_tenant_engine",
    "insert_ignoring_conflicts",
    "is_sample_partition",
    "schema_transaction",
    "write_samples",
]

#: A 64-bit auto-numbered key; on SQLite it must be INTEGER to alias the rowid.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")

#: How long a SQLite writer waits for another writer's transaction (two streams
#: of one vehicle, or several vehicles of one tenant) before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: PostgreSQL advisory lock key of schema changes (any fixed 64-bit number; "telehub" in ASCII).
_SCHEMA_LOCK = int.from_bytes(b"telehub", "big")

#: ... and of creating sample partitions (one below it).
_PARTITION_LOCK = _SCHEMA_LOCK - 1

#: Microseconds in a day: partitions hold one UTC day of CAN time each.
DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
#: Days (since 1970-01-01) that get partitions of their own: 2000-01-01 up to 2100-01-01.
_FIRST_DAY = (date(2000, 1, 1) - _EPOCH).days
_END_DAY = (date(2100, 1, 1) - _EPOCH).days
_DAY_PARTITION = re.compile(r"samples_p(\d{8})")
_CATCH_ALL = ("samples_before_2000", "samples_from_2100")

_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def create_tenant_engine(url: str) -> Engine:
    """An engine for one tenant's database, tuned for its dialect."""
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in _INSERTS:
        raise StoreError(f"unsupported database {dialect!r}: use sqlite or postgresql")
    if dialect == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_driver_name() != "psycopg":
        raise StoreError(
            f"unsupported PostgreSQL driver {parsed.get_driver_name()!r}: "
            "use postgresql+psycopg:// (psycopg 3, whose COPY the store uses)"
        )
    # Connections dropped by a server restart or a load balancer are replaced
    # instead of failing the next batch.
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
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
    """A connection in a transaction that alone may change the schema, committed at the end.

    Two processes opening one database at once would otherwise both find it
    empty and both create its tables; with the lock the second waits, then
    finds the work done. Leaving by an exception rolls everything back.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # Transactional DDL: the lock and every change end with the commit.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            yield conn
            conn.commit()
            return
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


def _insert(engine: Engine, table: Table) -> Any:
    return _INSERTS[engine.dialect.name](table)


def insert_ignoring_conflicts(engine: Engine, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: a row whose unique key exists is skipped.

    Add ``.returning(...)`` to learn whether the row was new (no row comes back
    when it was skipped). Under concurrency the database's unique index, not a
    prior read, decides who wins.
    """
    statement: Insert = _insert(engine, table).on_conflict_do_nothing()
    return statement


class NewestUpsert:
    """Insert rows, or update the existing row of the same key unless it is newer.

    ``order`` decides "newer": the stored row is replaced when the incoming
    ``order`` value is greater than or equal to the stored one, so an old batch
    arriving late never hides a newer value. The rows' keys must be distinct.
    Columns in ``shared`` take one value for every row.

    SQLite takes the rows as an ``executemany``; PostgreSQL takes them as one
    statement over arrays (``INSERT ... SELECT FROM unnest(...)``), one
    round trip and one plan however many rows, where an ``executemany`` costs
    driver work and a statement per row.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        *,
        key: Sequence[Column[Any]],
        order: Column[Any],
        update: Sequence[Column[Any]],
        shared: Sequence[Column[Any]] = (),
    ) -> None:
        self._arrays = engine.dialect.name == "postgresql"
        names = [column.name for column in table.columns]
        shared_names = {column.name for column in shared}
        self._varying = [name for name in names if name not in shared_names]
        statement = _insert(engine, table)
        if self._arrays:
            arrays = (
                bindparam(name, type_=postgresql.ARRAY(table.c[name].type))
                for name in self._varying
            )
            # render_derived names the columns: "AS anon_1(signal_id, ...)".
            rows = func.unnest(*arrays).table_valued(*self._varying).render_derived()
            values = (
                bindparam(name, type_=table.c[name].type) if name in shared_names else rows.c[name]
                for name in names
            )
            statement = statement.from_select(names, select(*values))
        excluded = statement.excluded
        self._statement: Insert = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={column.name: excluded[column.name] for column in (order, *update)},
            where=excluded[order.name] >= order,
        )

    def execute(
        self, conn: Connection, shared: dict[str, Any], columns: dict[str, Sequence[Any]]
    ) -> None:
        """Upsert the rows given as ``columns`` (equal lengths) in ``conn``'s transaction."""
        if self._arrays:
            conn.execute(self._statement, {**shared, **columns})
            return
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        conn.execute(
            self._statement, [{**shared, **dict(zip(names, row, strict=True))} for row in rows]
        )


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

    def ensure(self, ts_us: Iterable[int] | np.ndarray[Any, Any]) -> None:
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


# ---------------------------------------------------------------------- writing samples

_COPY_SAMPLES = "COPY samples (vehicle_id, signal_id, ts_us, value) FROM STDIN (FORMAT BINARY)"
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


def write_samples(conn: Connection, table: Table, vehicle_pk: int, samples: SampleColumns) -> None:
    """Write the batch's samples in the transaction of ``conn`` (``samples`` is ``table``).

    Raises ``MissingPartition`` when PostgreSQL found no partition for a sample.
    """
    if conn.dialect.name == "postgresql":
        _copy_samples(conn, vehicle_pk, samples)
        return
    conn.execute(
        table.insert(),
        [
            {"vehicle_id": vehicle_pk, "signal_id": sid, "ts_us": ts, "value": value}
            for sid, ts, value in zip(
                samples.signal_ids, samples.ts_us, samples.values, strict=True
            )
        ],
    )


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


def _copy_samples(conn: Connection, vehicle_pk: int, samples: SampleColumns) -> None:
    import psycopg  # only PostgreSQL stores need it (the "postgres" extra)

    data = copy_data(vehicle_pk, samples)
    # create_tenant_engine admits no other PostgreSQL driver.
    driver = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    try:
        # The driver's own connection, in the transaction SQLAlchemy began on it.
        with driver.cursor() as cursor, cursor.copy(_COPY_SAMPLES) as copy:
            copy.write(data)
    except psycopg.errors.CheckViolation as exc:
        # The only check on samples is the partition bound: "no partition found".
        raise MissingPartition(str(exc).splitlines()[0]) from exc
    except psycopg.Error as exc:
        # As SQLAlchemy wraps driver errors, so the store translates this one too.
        raise DBAPIError.instance(_COPY_SAMPLES, None, exc, psycopg.Error) from exc
