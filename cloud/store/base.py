"""What every part of ``TenantStore`` shares: the engine, transactions, error translation.

``TenantStore`` is assembled from parts, one per kind of data (telemetry in
``repository``, plans and consent in ``control``, fault codes and health in
``diagnostics``); each part derives from ``StoreBase`` and uses its
``_connection`` so that every ``SQLAlchemyError`` leaves as ``StoreError``
after the transaction rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import SQLAlchemyError

from cloud.errors import StoreError, UnknownVehicle
from cloud.store.models import Base, Vehicle

__all__ = ["StoreBase", "describe", "now", "require_vehicle", "table", "vehicle_pk"]


class StoreBase:
    """An engine and the transaction helper; subclasses add the queries."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._closed = False

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tests and maintenance jobs)."""
        return self._engine

    def close(self) -> None:
        """Release every pooled connection; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    @contextmanager
    def _connection(self, action: str) -> Iterator[Connection]:
        # Leaving the block without commit() rolls the transaction back.
        with self._translated(action), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Refuse work on a closed store; every ``SQLAlchemyError`` leaves as ``StoreError``."""
        if self._closed:
            raise StoreError(f"cannot {action}: the tenant store is closed")
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {action}: {describe(exc)}") from exc


def table(model: type[Base]) -> Table:
    """The model's ``Table`` (``Model.__table__`` is only a FromClause to type checkers)."""
    return Base.metadata.tables[model.__tablename__]


def now() -> datetime:
    return datetime.now(UTC)


def vehicle_pk(conn: Connection, vehicle_id: str, *, for_update: bool = False) -> int | None:
    """The vehicle's row id; ``for_update`` locks the row (PostgreSQL) until the commit."""
    query = select(Vehicle.id).where(Vehicle.vehicle_id == vehicle_id)
    if for_update:
        # SQLite has no row locks (its compiler drops the clause): its single
        # writer already serialises the transactions that take this lock.
        query = query.with_for_update()
    return conn.execute(query).scalar_one_or_none()


def require_vehicle(conn: Connection, vehicle_id: str, *, for_update: bool = False) -> int:
    pk = vehicle_pk(conn, vehicle_id, for_update=for_update)
    if pk is None:
        raise UnknownVehicle(f"vehicle {vehicle_id!r} is not enrolled")
    return pk


def describe(exc: SQLAlchemyError) -> str:
    # The driver's own message, without SQLAlchemy's statement and parameter dump
    # (which can be megabytes for a batch).
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"
