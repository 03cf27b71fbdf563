"""What every part of ``CrmStore`` shares: transactions, error translation, generic rows.

Every method opens its own transaction, so the store is safe to call from the
web server's worker threads at once. ``SQLAlchemyError`` leaves as
``StoreUnavailable`` (or ``Conflict`` for a broken unique or foreign key),
after the transaction rolled back. Rows leave as plain dicts, which the API's
``Public`` schemas validate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crm.errors import Conflict, NotFound, PreconditionFailed, StoreUnavailable

__all__ = ["Page", "Row", "StoreBase", "now_us", "page_of"]

Row = dict[str, Any]


def now_us() -> int:
    return time.time_ns() // 1000


class Page:
    """One page of a keyset-paginated list: ``next_after`` continues it, ``None`` at the end."""

    __slots__ = ("items", "next_after")

    def __init__(self, items: list[Row], next_after: int | None) -> None:
        self.items = items
        self.next_after = next_after


def page_of(rows: list[Row], limit: int, key: str = "id") -> Page:
    """``rows`` fetched with ``limit + 1``: the extra row only says another page exists."""
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, int(items[-1][key]) if more and items else None)


class StoreBase:
    """An engine and the helpers the record, service and webhook parts build on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _tx(self, action: str) -> Iterator[Connection]:
        """One transaction, committed when the block ends without an exception."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise Conflict(f"cannot {action}: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot {action}: {_first_line(exc)}") from exc

    # ------------------------------------------------------------------ generic rows

    @staticmethod
    def _insert(conn: Connection, table: Table, values: Mapping[str, Any]) -> Row:
        created = conn.execute(insert(table).values(**values).returning(*table.c)).one()
        return dict(created._mapping)

    @staticmethod
    def _one(conn: Connection, table: Table, row_id: int, what: str) -> Row:
        row = conn.execute(select(table).where(table.c.id == row_id)).first()
        if row is None:
            raise NotFound(f"{what} {row_id} does not exist")
        return dict(row._mapping)

    @staticmethod
    def _page(
        conn: Connection,
        table: Table,
        *,
        where: list[ColumnElement[bool]],
        after: int | None,
        limit: int,
    ) -> Page:
        query = select(table).where(*where).order_by(table.c.id).limit(limit + 1)
        if after is not None:
            query = query.where(table.c.id > after)
        return page_of([dict(r._mapping) for r in conn.execute(query)], limit)

    @staticmethod
    def _update_versioned(
        conn: Connection,
        table: Table,
        row_id: int,
        expected_version: int,
        values: Mapping[str, Any],
        what: str,
    ) -> Row:
        """Update the row only if it is still at ``expected_version`` (a compare-and-set)."""
        changed = conn.execute(
            update(table)
            .where(table.c.id == row_id, table.c.version == expected_version)
            .values(**values, version=table.c.version + 1)
            .returning(*table.c)
        ).first()
        if changed is not None:
            return dict(changed._mapping)
        current = StoreBase._one(conn, table, row_id, what)
        raise PreconditionFailed(
            f"{what} {row_id} is at version {current['version']}, not {expected_version}"
        )


def _first_line(exc: SQLAlchemyError) -> str:
    # The driver's message without SQLAlchemy's statement and parameter dump.
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
