"""``crm.server.serve`` on a NATS event bus: rule events published by the cloud open
leads in the CRM's process (the split deployment)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cloud.config import CloudSettings, TenantSettings
from cloud.events import RuleEvent
from cloud.events.envelope import encode
from cloud.events.jetstream import NatsBus
from cloud.store import TenantRegistry
from crm.config import CrmSettings
from crm.server import serve
from crm.store import CrmStores
from tests.cloud.events.conftest import eventually
from tests.crm.conftest import CRM_SECRET, TENANT_SECRET
from tests.crm.test_service_loop import fault

pytestmark = pytest.mark.nats


def records(store_settings: CloudSettings, tenant: str) -> None:
    """A dealer, the owner's vehicle ``car-1`` with after-sales consent."""
    with TenantRegistry(store_settings) as registry:
        crm = CrmStores(registry).store(tenant)
        dealer = crm.create_dealer("D1", "Dealer", [])
        owner = crm.create_customer({"name": "O", "email": "o@example.com"})
        vehicle = crm.create_vehicle({"vin": "WVWZZZ1JZXW000001", "telemetry_id": "car-1",
                                      "model": "m", "year": 2024,
                                      "preferred_dealer_id": dealer["id"]})  # fmt: skip
        crm.create_consent({"vehicle_id": vehicle["id"], "customer_id": owner["id"],
                            "purpose": "after_sales", "dealer_id": None, "valid_from_us": 0,
                            "valid_to_us": None, "source": "app"})  # fmt: skip


def open_leads(store_settings: CloudSettings, tenant: str) -> int:
    with TenantRegistry(store_settings) as registry:
        crm = CrmStores(registry).store(tenant)
        return len(crm.leads(dealer_id=None, state="open", vehicle_id=None, after=None,
                             limit=10).items)  # fmt: skip


async def test_rule_events_on_nats_open_leads_in_the_serving_crm(
    tmp_path: Path, nats_url: str
) -> None:
    tenant = f"crm{uuid.uuid4().hex[:10]}"
    cloud = CloudSettings(
        data_dir=tmp_path, event_bus=nats_url,
        tenants={tenant: TenantSettings(token_secret=TENANT_SECRET)},
    )  # fmt: skip
    records(cloud, tenant)
    stop, started = asyncio.Event(), asyncio.Event()
    crm = CrmSettings(listen="127.0.0.1:0", token_secret=CRM_SECRET, grace_seconds=1)
    serving = asyncio.create_task(
        serve(crm, cloud, stop=stop, on_started=lambda _server: started.set())
    )
    publisher = NatsBus()
    await publisher.connect(nats_url)
    try:
        event = fault()
        envelope = RuleEvent(
            tenant=tenant, vehicle_id="car-1", id=event.id, event=event.kind.value,
            ts_us=event.ts_us, severity=event.severity.value, details=event.details,
        )  # fmt: skip
        async with asyncio.timeout(15):
            await started.wait()  # the CRM's consumer is attached
        await publisher.publish(f"telehub.{tenant}.events.fault_set", encode(envelope),
                                msg_id=envelope.id)  # fmt: skip
        await eventually(lambda: open_leads(cloud, tenant) == 1, within=15)
        assert not serving.done()
    finally:
        stop.set()
        await serving
        await publisher.remove_tenant(tenant)
        await publisher.close()
