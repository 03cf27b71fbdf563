"""Per-tenant telemetry stores: one database per automaker, reached through SQLAlchemy."""

from __future__ import annotations

from cloud.store.registry import TenantRegistry
from cloud.store.repository import TenantStore
from cloud.store.schema import upgrade_schema

__all__ = ["TenantRegistry", "TenantStore", "upgrade_schema"]
