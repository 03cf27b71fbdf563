"""A fault code end to end: car → cloud → rule event → lead → appointment → repair order
→ closed, over the real gRPC gateway and the CRM over real HTTP (uvicorn on loopback).

The recording is the bundled J1939 truck (127 s idling), whose ECUs broadcast
real DM1 messages with active fault codes. The agent replays it to the
gateway, which announces each committed batch on the event bus (in-process);
``RulesFeed`` runs the rules over it and announces their events; the CRM's
``LeadFeed`` hands them to ``LeadService.on_event``; the dealer and the
automaker then work the lead through the CRM's HTTP API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.events import MemoryBus
from cloud.rules.events import EventKind
from cloud.rules.worker import RulesWorker
from cloud.rules_feed import RulesFeed
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry
from crm.auth import Role
from crm.config import CrmSettings
from crm.feed import LeadFeed
from crm.keys import issue_api_key
from crm.leads import LeadService
from crm.server import start_crm
from crm.store import CrmStores
from tests.cloud.events.conftest import eventually
from tests.conftest import E2E_SECRET, E2E_TENANT
from tools.demo import demo_data, recordings
from vehicle_agent.app import Agent
from vehicle_agent.decoding import Decoder
from vehicle_agent.sources import LogSource

VEHICLE = "DEMO-TRUCK-0001"


class Api:
    def __init__(self, session: aiohttp.ClientSession, key: str) -> None:
        self.session = session
        self.headers = {"Authorization": f"Bearer {key}"}

    async def call(
        self, method: str, path: str, body: Any = None, status: int = 200, **headers: str
    ) -> Any:
        async with self.session.request(
            method, path, json=body, headers={**self.headers, **headers}
        ) as reply:
            assert reply.status == status, await reply.text()
            return await reply.json()


@pytest.mark.slow
async def test_a_fault_code_becomes_a_closed_repair_order(
    settings: CloudSettings, registry: TenantRegistry
) -> None:
    stores = CrmStores(registry)
    crm = await start_crm(
        CrmSettings(listen="127.0.0.1:0", token_secret=E2E_SECRET, grace_seconds=1), stores
    )
    async with MemoryBus() as bus:
        # Consumers first: a consumer sees what is published after it exists.
        rules = RulesFeed(bus, registry, RulesWorker({}))
        await rules.start([E2E_TENANT])
        leads = LeadFeed(bus, LeadService(stores))
        await leads.start([E2E_TENANT])
        gateway = await start_gateway(settings, registry, bus=bus)
        try:
            admin_key = issue_api_key(
                stores.store(E2E_TENANT), E2E_TENANT, role=Role.ADMIN, dealer_id=None,
                label="e2e",
            ).text  # fmt: skip
            async with aiohttp.ClientSession(crm.url) as session:
                await run_loop(gateway, registry, leads, Api(session, admin_key), session)
        finally:
            await gateway.stop(0)
            await crm.stop()


async def run_loop(
    gateway: GatewayServer,
    registry: TenantRegistry,
    feed: LeadFeed,
    admin: Api,
    session: aiohttp.ClientSession,
) -> None:
    # The automaker's records: a dealer, the owner's vehicle, consent and a grant.
    dealer = await admin.call("POST", "/v1/dealers", {"code": "D1", "name": "Truck Centre"}, 201)
    key_body = {"role": "dealer", "dealer_id": dealer["id"], "label": "dms"}
    key = await admin.call("POST", "/v1/api-keys", key_body, 201)
    dealer_api = Api(session, key["key"])
    owner = await admin.call("POST", "/v1/customers",
                             {"name": "Fleet Ltd", "email": "fleet@example.com"}, 201)  # fmt: skip
    vehicle = await admin.call("POST", "/v1/vehicles", {
        "vin": "1FUJGLDR1CS000001", "telemetry_id": VEHICLE, "model": "Cascadia",
        "year": 2021, "preferred_dealer_id": dealer["id"]}, 201)  # fmt: skip
    for purpose in ("diagnostics", "after_sales"):
        await admin.call("POST", "/v1/consents", {
            "vehicle_id": vehicle["id"], "customer_id": owner["id"], "purpose": purpose,
            "valid_from": "2020-01-01T00:00:00Z", "source": "app"}, 201)  # fmt: skip
    await admin.call("POST", "/v1/grants", {
        "dealer_id": dealer["id"], "vehicle_id": vehicle["id"],
        "purposes": ["diagnostics", "after_sales"], "fields": ["health", "faults", "service"],
        "valid_from": "2020-01-01T00:00:00Z"}, 201)  # fmt: skip

    # The car: its agent replays the log to the real gateway.
    store = registry.store(E2E_TENANT)
    store.enroll_vehicle(VEHICLE)
    rec = next(r for r in recordings(demo_data()) if r.vehicle_id == VEHICLE)
    agent = Agent(
        vehicle_id=VEHICLE,
        token=issue_token(E2E_TENANT, VEHICLE, E2E_SECRET),
        gateway=gateway.target,
        decoder=Decoder(rec.dbcs),
        source=LogSource(Path(rec.log)),
    )
    await agent.run(drain_timeout=120)
    codes = sorted(f.fault.code for f in store.active_faults(VEHICLE))
    assert len(codes) >= 1

    # The cloud: the rules ran over each batch as it was committed, and the bus brought
    # their events to the CRM. The first fault opened the lead, the others joined it.
    def settled() -> bool:
        events = store.events(VEHICLE)
        set_codes = sum(e.kind is EventKind.FAULT_SET for e in events)
        return set_codes == len(codes) and feed.handled >= len(events)

    await eventually(settled, within=30)
    faults = [e for e in store.events(VEHICLE) if e.kind is EventKind.FAULT_SET]
    assert sorted(e.details["code"] for e in faults) == codes
    leads = LeadService(CrmStores(registry))
    results = [leads.on_event(E2E_TENANT, e).outcome for e in faults]
    assert results == ["opened"] + ["merged"] * (len(faults) - 1)

    # The dealer sees the lead and the fault, and works it.
    (lead,) = (await dealer_api.call("GET", "/v1/leads"))["items"]
    assert (lead["kind"], lead["state"]) == ("fault_set", "open")
    # One lead: the first fault opened it, the others joined it.
    assert lead["reason"].startswith(f"fault code {faults[0].details['code']} set")
    data = await dealer_api.call("GET", f"/v1/vehicles/{vehicle['id']}/data")
    assert sorted(f["code"] for f in data["faults"]) == codes
    slots = await dealer_api.call("POST", f"/v1/leads/{lead['id']}/slots", {"slots": [
        {"start": "2030-05-06T08:00:00Z", "end": "2030-05-06T10:00:00Z"}]}, 201)  # fmt: skip
    await admin.call("POST", f"/v1/appointments/{slots[0]['id']}/book")  # the owner's choice
    order = await dealer_api.call("POST", f"/v1/appointments/{slots[0]['id']}/repair-order",
                                  {"concern": "amber lamp on"}, 201)  # fmt: skip
    order = await dealer_api.call("PATCH", f"/v1/repair-orders/{order['id']}", {
        "cause": "sensor harness chafed", "correction": "harness repaired",
        "labour_hours": 2.0, "mileage_km": 412_000.0}, 200, **{"If-Match": '"1"'})  # fmt: skip
    closed = await dealer_api.call("POST", f"/v1/repair-orders/{order['id']}/close",
                                   None, 200, **{"If-Match": '"2"'})  # fmt: skip
    assert closed["state"] == "closed"
    assert (await dealer_api.call("GET", f"/v1/leads/{lead['id']}"))["state"] == "closed"
    history = await dealer_api.call("GET", f"/v1/vehicles/{vehicle['id']}/service-history")
    assert [h["correction"] for h in history] == ["harness repaired"]
    assert store.service_record(VEHICLE).odometer_km == 412_000.0
    # The same events delivered again (an at-least-once bus) open nothing new.
    assert [leads.on_event(E2E_TENANT, e).outcome for e in faults] == results
    assert len((await dealer_api.call("GET", "/v1/leads"))["items"]) == 1
