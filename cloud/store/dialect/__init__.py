"""Everything that differs between SQLite and PostgreSQL, in one place.

- engine creation: SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and
  foreign keys on every new connection; PostgreSQL goes through psycopg 3 (a
  bare ``postgresql://`` URL gets it), whose COPY and pipelines the store uses;
- ``INSERT ... ON CONFLICT`` (both dialects spell it alike, but through their own
  ``insert`` constructs), and ``NewestUpsert`` (arrays on PostgreSQL);
- the 64-bit surrogate key type (SQLite auto-numbers only ``INTEGER PRIMARY KEY``);
- the schema lock migrations run under (``schema_transaction``): an advisory
  lock on PostgreSQL, SQLite's write lock taken up front (``BEGIN IMMEDIATE``);
- the samples table's day partitions (PostgreSQL only, ``SamplePartitions``);
- how one batch's transaction runs (``BatchWriter``): on PostgreSQL on
  psycopg's connection, samples by binary COPY, in three round trips; on
  SQLite through SQLAlchemy Core, samples by ``executemany``.

The modules ``postgresql`` and ``sqlite`` hold each side; the rest of the
store imports this package only, and never asks which database it runs on.
Any other dialect is refused when its engine is created, so an unsupported
URL fails at start-up rather than at the first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

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
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as lite
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert

from cloud.domain import SampleColumns
from cloud.errors import StoreError
from cloud.store.dialect import postgresql, sqlite
from cloud.store.dialect.postgresql import (
    DAY_US,
    MissingPartition,
    Params,
    SamplePartitions,
    Statement,
    copy_data,
    create_catch_all_partitions,
    create_day_partitions,
    is_sample_partition,
)
from cloud.store.dialect.sqlite import SQLITE_BUSY_TIMEOUT_MS

__all__ = [
    "BIG_ID",
    "DAY_US",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Batch",
    "BatchWriter",
    "MissingPartition",
    "NewestUpsert",
    "SamplePartitions",
    "Statement",
    "copy_data",
    "create_catch_all_partitions",
    "create_day_partitions",
    "create_tenant_engine",
    "insert_for",
    "insert_ignoring_conflicts",
    "is_sample_partition",
    "maintenance_transaction",
    "schema_transaction",
    "upsert",
]

#: A 64-bit auto-numbered key; on SQLite it must be INTEGER to alias the rowid.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")

_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": lite.insert,
    "postgresql": pg.insert,
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
        event.listen(engine, "connect", sqlite.on_connect)
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


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that alone may change the schema, committed at the end.

    Two processes opening one database at once would otherwise both find it
    empty and both create its tables; with the lock the second waits, then
    finds the work done. Leaving by an exception rolls everything back.
    """
    if engine.dialect.name == "sqlite":
        with sqlite.schema_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn:
        # Transactional DDL: the lock and every change end with the commit.
        postgresql.schema_lock(conn)
        yield conn
        conn.commit()


def _insert(engine: Engine, table: Table) -> Any:
    return _INSERTS[engine.dialect.name](table)


def insert_for(engine: Engine, table: Table) -> Any:
    """The dialect's own ``insert`` of *table*, which has ``on_conflict_do_update``.

    For upserts whose update is not a plain replacement (``upsert``), such as
    merging counts; both dialects spell ``ON CONFLICT`` alike.
    """
    return _insert(engine, table)


@contextmanager
def maintenance_transaction(engine: Engine) -> Iterator[Connection]:
    """One maintenance job at a time per database (retention), committed at the end.

    It holds the same lock as schema changes: writers of telemetry go on, but a
    second retention run (another gateway process, a cron job) waits for the
    first instead of folding the same samples twice.
    """
    with schema_transaction(engine) as conn:
        yield conn


def insert_ignoring_conflicts(engine: Engine, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: a row whose unique key exists is skipped.

    Add ``.returning(...)`` to learn whether the row was new (no row comes back
    when it was skipped). Under concurrency the database's unique index, not a
    prior read, decides who wins.
    """
    statement: Insert = _insert(engine, table).on_conflict_do_nothing()
    return statement


def upsert(engine: Engine, table: Table, *, key: Sequence[Column[Any]]) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE``: the row as given replaces the stored one."""
    statement = _insert(engine, table)
    keys = {column.name for column in key}
    replaced = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    result: Insert = statement.on_conflict_do_update(index_elements=list(key), set_=replaced)
    return result


class NewestUpsert:
    """Insert rows, or update the existing row of the same key unless it is newer.

    ``order`` decides "newer": the stored row is replaced when the incoming
    ``order`` value is greater than or equal to the stored one, so an old batch
    arriving late never hides a newer value. The rows' keys must be distinct.
    Columns in ``shared`` take one value for every row.

    SQLite takes the rows as an ``executemany``; PostgreSQL takes them as one
    statement over arrays (``INSERT ... SELECT FROM unnest(...)``), one
    plan however many rows, where an ``executemany`` costs driver work and a
    statement per row. ``statement`` with ``params(...)`` is what to execute.
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
        varying = [name for name in names if name not in shared_names]
        statement = _insert(engine, table)
        if self._arrays:
            arrays = (bindparam(name, type_=pg.ARRAY(table.c[name].type)) for name in varying)
            # render_derived names the columns: "AS anon_1(signal_id, ...)".
            rows = func.unnest(*arrays).table_valued(*varying).render_derived()
            values = (
                bindparam(name, type_=table.c[name].type) if name in shared_names else rows.c[name]
                for name in names
            )
            statement = statement.from_select(names, select(*values))
        excluded = statement.excluded
        self.statement: Insert = statement.on_conflict_do_update(
            index_elements=list(key),
            set_={column.name: excluded[column.name] for column in (order, *update)},
            where=excluded[order.name] >= order,
        )

    def params(
        self, shared: Mapping[str, Any], columns: Mapping[str, Sequence[Any]]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """The parameters of ``statement`` for the rows given as ``columns`` (equal lengths)."""
        if self._arrays:
            return {**shared, **columns}
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        return [{**shared, **dict(zip(names, row, strict=True))} for row in rows]


class Batch(Protocol):
    """One batch's transaction, in this order: claim, samples, other statements, commit.

    Leaving the connection's block without ``commit`` rolls everything back.
    """

    def claim(self, statement: Statement, params: Mapping[str, Any]) -> Any:
        """Run ``statement`` first; the first column of its first row, ``None`` for no row."""

    def copy_samples(self, vehicle_pk: int, samples: SampleColumns) -> None:
        """Write the batch's samples; raises ``MissingPartition`` for a day with none."""

    def execute(self, statement: Statement, params: Any) -> None:
        """Run a statement whose result nobody needs (it may wait for ``commit``)."""

    def commit(self) -> None:
        """Commit; errors of statements that waited for it surface here."""


class BatchWriter:
    """Opens the ``Batch`` of a connection; ``samples`` is the samples table."""

    def __init__(self, engine: Engine, samples: Table) -> None:
        self._engine = engine
        self._samples = samples
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[Statement, str]] = {}

    def begin(self, conn: Connection) -> Batch:
        if self._engine.dialect.name == "postgresql":
            return postgresql.PostgresBatch(conn, self._sql)
        return sqlite.CoreBatch(conn, self._samples)

    def _sql(self, statement: Statement, params: Params) -> str:
        """``statement`` compiled for the driver, once per statement and parameter names."""
        first = params if isinstance(params, Mapping) else params[0]
        key = (id(statement), tuple(first))
        cached = self._compiled.get(key)
        if cached is None:
            compiled = statement.compile(dialect=self._engine.dialect, column_keys=list(first))
            # The statement is kept with its SQL so that its id is never reused.
            cached = self._compiled[key] = (statement, str(compiled))
        return cached[1]
