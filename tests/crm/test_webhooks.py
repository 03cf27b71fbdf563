"""Webhooks against a real aiohttp receiver on loopback that fails on purpose: signed
payloads, retries with backoff, a dead letter after the last attempt, replay on demand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from crm.config import CrmSettings
from crm.leads import LeadService
from crm.server import start_crm
from crm.store import CrmStores
from crm.webhooks import WebhookSender, sign
from tests.crm.conftest import World, created, soon
from tests.crm.test_service_loop import fault

SECRET = "dealer-shared-secret-0123"


@dataclass
class Receiver:
    """Answers ``fail_first`` requests with 503, then 204; records every request."""

    url: str = ""
    fail_first: int = 0
    seen: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int) -> None:
        while len(self.seen) < count:
            self.arrived.clear()
            await self.arrived.wait()

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((time.monotonic(), dict(request.headers), await request.read()))
        self.arrived.set()
        if len(self.seen) <= self.fail_first:
            return web.Response(status=503, text="down for maintenance")
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


@pytest.fixture
async def sender(stores: CrmStores, crm_settings: CrmSettings) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(stores, crm_settings)
    yield sender
    await sender.close()


def subscribe(world: World, url: str) -> None:
    created(world.post("/v1/webhooks", world.dealer, {"url": url, "secret": SECRET}))


def verify(headers: dict[str, str], body: bytes) -> bool:
    stamp = headers["X-Telehub-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Telehub-Signature"], f"sha256={expected.hexdigest()}")


async def test_a_failing_receiver_gets_retries_with_backoff_until_it_answers(
    stores: CrmStores, world: World, receiver: Receiver, sender: WebhookSender
) -> None:
    receiver.fail_first = 2
    subscribe(world, receiver.url)
    lead = LeadService(stores).on_event("acme", fault())
    counts = await sender.drain("acme", within=10)
    assert (counts.delivered, counts.retried, counts.dead) == (1, 2, 0)
    assert len(receiver.seen) == 3
    times = [seen[0] for seen in receiver.seen]
    # Backoff 0.05 s, then 0.1 s (crm_settings): each wait at least that long.
    assert times[1] - times[0] >= 0.05
    assert times[2] - times[1] >= 0.1
    for _, headers, body in receiver.seen:
        assert verify(headers, body)
        assert headers["X-Telehub-Event"] == "lead.opened"
    assert {h["X-Telehub-Delivery"] for _, h, _ in receiver.seen} == {"1"}
    payload = json.loads(receiver.seen[-1][2])
    assert payload["lead_id"] == lead.lead_id
    assert payload["vin"] == "WVWZZZ1JZXW000001"
    rows = world.get("/v1/webhook-deliveries", world.dealer).json()["items"]
    assert [(r["state"], r["attempts"], r["last_error"]) for r in rows] == [("delivered", 3, None)]


async def test_the_last_failure_leaves_a_dead_letter_that_replays_on_demand(
    stores: CrmStores, world: World, receiver: Receiver, sender: WebhookSender
) -> None:
    receiver.fail_first = 3  # as many as crm_settings.webhook_attempts
    subscribe(world, receiver.url)
    LeadService(stores).on_event("acme", fault())
    counts = await sender.drain("acme", within=10)
    assert (counts.delivered, counts.retried, counts.dead) == (0, 2, 1)
    dead = world.get("/v1/webhook-deliveries", world.dealer, state="dead").json()["items"]
    assert [(d["attempts"], d["last_error"]) for d in dead] == [(3, "HTTP 503")]
    # Nothing more is sent by itself.
    assert (await sender.drain("acme", within=1)).delivered == 0
    assert len(receiver.seen) == 3
    replayed = world.post(f"/v1/webhook-deliveries/{dead[0]['id']}/replay", world.dealer)
    assert replayed.status_code == 200
    assert replayed.json()["state"] == "pending"
    assert world.post(f"/v1/webhook-deliveries/{dead[0]['id']}/replay",
                      world.dealer).status_code == 409  # fmt: skip
    assert (await sender.drain("acme", within=10)).delivered == 1
    assert len(receiver.seen) == 4
    assert verify(receiver.seen[-1][1], receiver.seen[-1][2])


async def test_an_unreachable_receiver_is_a_dead_letter_too(
    stores: CrmStores, world: World, sender: WebhookSender
) -> None:
    subscribe(world, "http://127.0.0.1:9/nothing-listens")
    LeadService(stores).on_event("acme", fault())
    counts = await sender.drain("acme", within=10)
    assert counts.dead == 1
    dead = world.get("/v1/webhook-deliveries", world.admin, state="dead").json()["items"]
    assert dead[0]["last_error"].startswith("Client")


def test_the_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", b'17.{"a":1}', hashlib.sha256).hexdigest()
    assert sign("k", 17, body) == f"sha256={expected}"


async def test_the_served_app_delivers_on_its_own_when_a_change_wakes_it(
    stores: CrmStores, crm_settings: CrmSettings, world: World, receiver: Receiver
) -> None:
    subscribe(world, receiver.url)
    lead = LeadService(stores).on_event("acme", fault())
    server = await start_crm(crm_settings, stores)
    try:
        async with aiohttp.ClientSession(server.url, headers=world.dealer) as http:
            async with http.post(f"/v1/leads/{lead.lead_id}/slots", json={"slots": [
                {"start": soon(60), "end": soon(120)}]}) as reply:  # fmt: skip
                slot = (await reply.json())[0]
            # The booking queues appointment.booked and wakes the sender, which also
            # finds the lead.opened queued before the server started.
            async with http.post(f"/v1/appointments/{slot['id']}/book") as reply:
                assert reply.status == 200
            async with asyncio.timeout(5):
                await receiver.wait_for(2)
    finally:
        await server.stop()
    events = sorted(headers["X-Telehub-Event"] for _, headers, _ in receiver.seen)
    assert events == ["appointment.booked", "lead.opened"]
    assert all(verify(headers, body) for _, headers, body in receiver.seen)
