"""The CRM's storage: its tables in each tenant's own store, and ``CrmStores``, which
reaches them through the cloud's tenant registry (the same database URL as the
tenant's telemetry)."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from cloud.errors import StoreError, UnknownTenant
from cloud.store import TenantRegistry, TenantStore
from crm.errors import NotFound, StoreUnavailable
from crm.store.access import AccessStore
from crm.store.base import Page, Row
from crm.store.hooks import HookStore
from crm.store.records import RecordStore
from crm.store.service import LeadOutcome, MaintenanceStore, ServiceStore

__all__ = ["CrmStore", "CrmStores", "LeadOutcome", "Page", "Row"]


class CrmStore(RecordStore, AccessStore, ServiceStore, MaintenanceStore, HookStore):
    """Everything the CRM keeps in one tenant's store; ``telemetry`` is the cloud's side."""

    def __init__(self, engine: Engine, telemetry: TenantStore) -> None:
        super().__init__(engine)
        self.telemetry = telemetry


class CrmStores:
    """The ``CrmStore`` of each configured tenant, opened (and migrated) on first use."""

    def __init__(self, registry: TenantRegistry) -> None:
        self._registry = registry
        self._stores: dict[str, CrmStore] = {}
        self._lock = threading.Lock()

    @property
    def tenants(self) -> list[str]:
        return self._registry.tenants

    def opened(self, tenant: str) -> CrmStore | None:
        """The tenant's store if it is open already (never blocks on IO)."""
        return self._stores.get(tenant)

    def store(self, tenant: str) -> CrmStore:
        with self._lock:
            store = self._stores.get(tenant)
            if store is None:
                try:
                    telemetry = self._registry.store(tenant)
                except UnknownTenant as exc:
                    raise NotFound(f"tenant {tenant!r} is not configured") from exc
                except StoreError as exc:
                    raise StoreUnavailable(str(exc)) from exc
                store = self._stores[tenant] = CrmStore(telemetry.engine, telemetry)
            return store
