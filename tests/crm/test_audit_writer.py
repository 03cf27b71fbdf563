"""The audit writer's group commit: every row committed before its request goes on,
rows of concurrent requests share transactions, a failed write fails the request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from crm.audit import AuditWriter
from crm.errors import StoreUnavailable
from crm.store import CrmStores
from crm.store.tables import audit_log


def row(number: int) -> dict[str, Any]:
    return {"at_us": number, "principal": f"k{number}", "role": "dealer", "dealer_id": 1,
            "purpose": "diagnostics", "action": "GET /x", "resource": "/x",
            "result": "allowed", "status": 200}  # fmt: skip


def count(stores: CrmStores, tenant: str) -> int:
    with stores.store(tenant).engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


async def test_every_row_is_committed_before_write_returns(stores: CrmStores) -> None:
    writer = AuditWriter(stores)
    try:
        await asyncio.gather(*(writer.write("acme", row(n)) for n in range(200)))
        assert count(stores, "acme") == 200
        await writer.write("globex", row(1))
        assert count(stores, "globex") == 1
        assert count(stores, "acme") == 200
    finally:
        writer.close()
    writer.close()  # idempotent


async def test_a_failed_write_fails_the_request(stores: CrmStores) -> None:
    writer = AuditWriter(stores)
    try:
        with pytest.raises(StoreUnavailable):
            await writer.write("acme", {**row(1), "status": None})  # NOT NULL column
        await writer.write("acme", row(2))  # the writer goes on
        assert count(stores, "acme") == 1
    finally:
        writer.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await writer.write("acme", row(3))
