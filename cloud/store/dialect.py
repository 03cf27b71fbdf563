"""Everything that differs between SQLite and PostgreSQL, in one place.

- engine creation: SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and
  foreign keys on every new connection;
- ``INSERT ... ON CONFLICT`` (both dialects spell it alike, but through their own
  ``insert`` constructs);
- the 64-bit surrogate key type (SQLite auto-numbers only ``INTEGER PRIMARY KEY``);
- the schema lock migrations run under (``schema_transaction``): an advisory
  lock on PostgreSQL, SQLite's write lock taken up front (``BEGIN IMMEDIATE``).

Any other dialect is refused when its engine is created, so an unsupported
URL fails at start-up rather than at the first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert

from cloud.errors import StoreError

__all__ = [
    "BIG_ID",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_tenant_engine",
    "insert_ignoring_conflicts",
    "schema_transaction",
    "upsert_keeping_newest",
]

#: A 64-bit auto-numbered key; on SQLite it must be INTEGER to alias the rowid.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")

#: How long a SQLite writer waits for another writer's transaction (two streams
#: of one vehicle, or several vehicles of one tenant) before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: PostgreSQL advisory lock key of schema changes (any fixed 64-bit number; "telehub" in ASCII).
_SCHEMA_LOCK = int.from_bytes(b"telehub", "big")

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


def upsert_keeping_newest(
    engine: Engine,
    table: Table,
    *,
    key: Sequence[Column[Any]],
    order: Column[Any],
    update: Sequence[Column[Any]],
) -> Insert:
    """Insert rows, or update the existing row of the same key unless it is newer.

    ``order`` decides "newer": the stored row is replaced when the incoming
    ``order`` value is greater than or equal to the stored one, so an old batch
    arriving late never hides a newer value.
    """
    statement = _insert(engine, table)
    excluded = statement.excluded
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={column.name: excluded[column.name] for column in (order, *update)},
        where=excluded[order.name] >= order,
    )
    return upsert
