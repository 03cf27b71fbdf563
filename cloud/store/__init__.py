"""Per-tenant telemetry stores: one database per automaker, reached through SQLAlchemy."""

from __future__ import annotations

from cloud.store.models import create_schema
from cloud.store.registry import TenantRegistry
from cloud.store.repository import TenantStore

__all__ = ["TenantRegistry", "TenantStore", "create_schema"]
