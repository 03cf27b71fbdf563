"""``TenantRegistry``: the open tenant stores of this process, one per configured tenant.

A tenant's store is opened (and its schema created) the first time it is
asked for, always at that tenant's own URL, so one automaker's rows can never
be written to another's database. Opening does blocking IO: async callers go
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading

from cloud.config import CloudSettings
from cloud.errors import StoreError, UnknownTenant
from cloud.store.repository import TenantStore

__all__ = ["TenantRegistry"]


class TenantRegistry:
    """Lazily opened ``TenantStore`` of every tenant in the settings."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings
        self._stores: dict[str, TenantStore] = {}
        # Several threads may ask for the same tenant at once; open it only once.
        self._lock = threading.Lock()
        self._closed = False

    @property
    def tenants(self) -> list[str]:
        """Names of the configured tenants."""
        return sorted(self._settings.tenants)

    def store(self, tenant: str) -> TenantStore:
        """The store of ``tenant``, opened on first use."""
        with self._lock:
            if self._closed:
                raise StoreError("the tenant registry is closed")
            store = self._stores.get(tenant)
            if store is None:
                if tenant not in self._settings.tenants:
                    raise UnknownTenant(f"tenant {tenant!r} is not configured")
                store = TenantStore.open(
                    self._settings.database_url(tenant),
                    default_consent=self._settings.default_consent_of(tenant),
                )
                self._stores[tenant] = store
            return store

    def close(self) -> None:
        """Close every open store; calling it again does nothing."""
        with self._lock:
            self._closed = True
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()

    def __enter__(self) -> TenantRegistry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
