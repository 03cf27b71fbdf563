"""The dealers' vehicle-health list on PostgreSQL: one statement per page, on an asyncio
connection pool, answered as the API's JSON.

The list is the CRM's hottest read. Served through SQLAlchemy in the thread
pool, a page cost ~3 ms of CPU in the API process and left the rows to be
turned into dicts, validated and serialised in Python. Here one statement does
all of it in the database, in one round trip and one transaction:

- the access rule (``crm.store.access.DEALER_HEALTH``: the grant and the
  owner's consent in force at this request), the very query the SQLite path runs;
- the JSON body of ``PageOf[VehicleHealth]``, built by ``json_build_object``
  and ``json_agg`` (PostgREST answers the same way), so the process passes
  bytes through;
- the request's audit row, inserted by a data-modifying ``WITH``: the page and
  its audit row commit together, or neither does.

The statement is compiled once and prepared by psycopg on each connection
(after its fifth use), so PostgreSQL plans it once per connection as well.
A test holds the JSON to the values of the SQLAlchemy path, page by page.

Writing the audit rows by group commit instead (a second statement inserting
the rows of all requests waiting meanwhile) was measured against this at 500
requests/s: it cost the process ~30% more CPU and the median request ~40% more
time, the batches staying small while each paid its own round trip.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import (
    URL,
    ColumnElement,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

from crm.errors import StoreUnavailable
from crm.store.access import ADMIN_HEALTH, DEALER_HEALTH, HealthPageAsk
from crm.store.tables import audit_log

__all__ = ["AUDIT_COLUMNS", "PgHealthPages", "conninfo"]

_log = logging.getLogger(__name__)

#: The columns of the audit row the caller hands in (``crm_audit_log`` but its id).
AUDIT_COLUMNS = tuple(c.name for c in audit_log.c if c.name != "id")
_EMPTY: ColumnElement[Any] = literal_column("'[]'::json")


def _key(name: str) -> ColumnElement[str]:
    return literal_column(f"'{name}'")


def _page_json(rows: Select[Any]) -> Select[Any]:
    """``rows`` (``limit`` + 1 of them, in id order) as ``{"items": [...], "next_after"}``
    of at most ``size`` items, with the audit row inserted beside."""
    page = rows.subquery("page")
    numbered = select(page, func.row_number().over(order_by=page.c.id).label("n")).subquery()
    c = numbered.c
    size = bindparam("size", type_=Integer)
    item = func.json_build_object(
        _key("id"), c.id, _key("vin"), c.vin, _key("model"), c.model, _key("year"), c.year,
        _key("mileage_km"), c.mileage_km, _key("score"), c.score,
        _key("reasons"), func.coalesce(c.reasons, _EMPTY),
    )  # fmt: skip
    items = func.coalesce(func.json_agg(aggregate_order_by(item, c.id)).filter(c.n <= size), _EMPTY)
    next_after = case((func.count() > size, func.max(c.id).filter(c.n == size)))
    audit = insert(audit_log).values({name: bindparam(f"audit_{name}") for name in AUDIT_COLUMNS})
    body = func.json_build_object(_key("items"), items, _key("next_after"), next_after)
    return select(sql_cast(body, Text)).select_from(numbered).add_cte(audit.cte("audit"))


class _Statement:
    """A statement compiled once for psycopg; it binds only ``runtime`` parameters."""

    def __init__(self, statement: Select[Any], runtime: set[str]) -> None:
        # The runtime parameters stay placeholders; the values given here only let the
        # literal ones (``crm.store.access._constant``) be rendered into the text.
        dialect = pg_psycopg.dialect()  # type: ignore[no-untyped-call]
        compiled = statement.params(dict.fromkeys(runtime, 0)).compile(
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        self.sql: LiteralString = compiled.string
        placeholders = set(re.findall(r"%\((\w+)\)s", self.sql))
        if placeholders != runtime:  # a new bound value in the query would land here
            raise RuntimeError(
                f"the health page binds {sorted(placeholders ^ runtime)} unexpectedly"
            )


_AUDIT_PARAMS = {f"audit_{name}" for name in AUDIT_COLUMNS}
_DEALER = _Statement(_page_json(DEALER_HEALTH), {"after", "limit", "size", "dealer_id", "at"}
                     | _AUDIT_PARAMS)  # fmt: skip
_ADMIN = _Statement(_page_json(ADMIN_HEALTH), {"after", "limit", "size"} | _AUDIT_PARAMS)


def conninfo(url: URL) -> str:
    """libpq's connection string for a SQLAlchemy PostgreSQL URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgHealthPages:
    """The health list of one tenant's PostgreSQL store, on a pool of ``size`` connections.

    ``open()`` in the event loop that will use it, ``close()`` in the same loop.
    """

    def __init__(self, dsn: str, *, size: int, timeout: float, name: str) -> None:
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=min(2, size),
            max_size=size,
            open=False,
            timeout=timeout,
            name=name,
            # Named, so that an operator sees in pg_stat_activity whose connections these are.
            kwargs={"autocommit": True, "application_name": name[:63]},
        )
        self._timeout = timeout
        self._checking: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as exc:
            await self._pool.close()
            raise StoreUnavailable(f"cannot reach the tenant's database: {exc}") from exc

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self._pool.close()

    async def page(self, ask: HealthPageAsk) -> bytes:
        """The page as JSON bytes; its audit row commits with it."""
        statement = _ADMIN if ask.dealer_id is None else _DEALER
        params: dict[str, Any] = {
            "after": ask.after or 0,
            "limit": ask.limit + 1,
            "size": ask.limit,
        }
        if ask.dealer_id is not None:
            params.update(dealer_id=ask.dealer_id, at=ask.at_us)
        for name in AUDIT_COLUMNS:
            params[f"audit_{name}"] = ask.audit[name]
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(statement.sql, params)
                row = await cursor.fetchone()
        except PoolTimeout as exc:
            raise StoreUnavailable(f"cannot list vehicle health: {exc}") from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._check_idle()
            raise StoreUnavailable(f"cannot list vehicle health: {_first_line(exc)}") from exc
        assert row is not None  # an aggregate always gives one row
        text: str = row[0]
        return text.encode()

    def _check_idle(self) -> None:
        # One connection failed (a restarted or failed-over server, say): test the idle
        # ones now, so that the next requests do not meet the same dead connections.
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        try:
            await self._pool.check()
        except Exception:  # a check that fails leaves the pool as it was
            _log.warning("checking the health list's idle connections failed", exc_info=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
