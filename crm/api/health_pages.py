"""The vehicle-health list's two paths, one answer: ``HealthPages.page`` gives the body
of ``PageOf[VehicleHealth]`` as JSON bytes, its audit row committed with the read.

- On PostgreSQL (unless ``CrmSettings.health_pool_size`` is 0): one statement
  on an asyncio connection pool per tenant (``crm.store.health_json``), never
  leaving the event loop.
- Elsewhere (SQLite, the embedded default): the SQLAlchemy query in the thread
  pool, serialised here by pydantic; the audit row in the same transaction.

The pools belong to the app (they live in its event loop): each opens at its
tenant's first request, and ``close()`` closes them all when the app stops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from crm.api.schemas import PageOf, VehicleHealth
from crm.config import CrmSettings
from crm.errors import StoreUnavailable
from crm.store import CrmStore
from crm.store.access import HealthPageAsk

if TYPE_CHECKING:
    from crm.store.health_json import PgHealthPages

__all__ = ["HealthPages"]

_log = logging.getLogger(__name__)
_PAGE = TypeAdapter(PageOf[VehicleHealth])


@functools.cache
def _pool_installed() -> bool:
    """psycopg-pool comes with the ``postgres`` extra; a PostgreSQL store reached with
    psycopg alone is served on the SQLAlchemy path, with a warning once."""
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        _log.warning(
            "psycopg-pool is not installed (pip install 'telehub[postgres]'): the health "
            "list is served through SQLAlchemy, at several times the CPU per request"
        )
        return False
    return True


class HealthPages:
    """Pages of the health list, on whichever path the tenant's store allows."""

    def __init__(self, settings: CrmSettings) -> None:
        self._settings = settings
        self._pools: dict[str, PgHealthPages] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def page(self, tenant: str, store: CrmStore, ask: HealthPageAsk) -> bytes:
        direct = self._settings.health_pool_size and store.engine.dialect.name == "postgresql"
        if direct and _pool_installed():
            pool = self._pools.get(tenant) or await self._open(tenant, store)
            return await pool.page(ask)
        result = await asyncio.to_thread(
            store.health_page,
            ask.dealer_id,
            after=ask.after,
            limit=ask.limit,
            audit=ask.audit,
            at_us=ask.at_us,
        )
        items = [
            VehicleHealth.model_validate({**row, "reasons": row["reasons"] or []})
            for row in result.items
        ]
        return _PAGE.dump_json(PageOf[VehicleHealth](items=items, next_after=result.next_after))

    async def _open(self, tenant: str, store: CrmStore) -> PgHealthPages:
        # Imported here: psycopg and its pool are installed with PostgreSQL support only.
        from crm.store.health_json import PgHealthPages, conninfo

        async with self._lock:
            pool = self._pools.get(tenant)
            if pool is None:
                if self._closed:
                    raise StoreUnavailable("the CRM is stopping")
                settings = self._settings
                pool = PgHealthPages(
                    conninfo(store.engine.url),
                    size=settings.health_pool_size,
                    timeout=settings.health_pool_timeout_seconds,
                    name=f"telehub-crm-health-{tenant}",
                )
                await pool.open()
                self._pools[tenant] = pool
            return pool

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()
