"""The rules fed from the bus: a committed batch in, its rule events out, on each bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio

from cloud.auth import issue_token
from cloud.config import TenantSettings
from cloud.events import BatchCommitted, Delivery, EventBus, RuleEvent
from cloud.events.envelope import decode, encode
from cloud.events.subjects import batches
from cloud.rules.worker import RulesWorker
from cloud.rules_feed import DURABLE, RulesFeed
from cloud.server import start_gateway
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2_grpc
from tests.cloud.conftest import SECRET_ACME, VEHICLE, make_settings
from tests.cloud.events.conftest import Buses, Collector, eventually
from tests.cloud.messages import batch, dm1, exchange, fault_report, hello, samples_for


async def test_a_committed_batch_is_run_through_the_rules_and_its_events_announced(
    buses: Buses, tenant: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path / "data", tenants={tenant: TenantSettings(token_secret=SECRET_ACME)}
    )
    bus = await buses.open()
    announced = Collector()
    await bus.subscribe(f"telehub.{tenant}.events.>", "test-events", announced)
    with TenantRegistry(settings) as registry:
        store = registry.store(tenant)
        store.enroll_vehicle(VEHICLE)
        feed = RulesFeed(bus, registry, RulesWorker({}))
        await feed.start([tenant])
        async with (
            await start_gateway(settings, registry, bus=bus) as gateway,
            grpc.aio.insecure_channel(gateway.target) as channel,
        ):
            ts = samples_for(1)[0][1]
            await exchange(
                telemetry_pb2_grpc.TelemetryGatewayStub(channel),
                [hello(VEHICLE), fault_report(1, [dm1(ts_us=ts)]), batch(1, samples_for(1))],
                token=issue_token(tenant, VEHICLE, SECRET_ACME),
            )
        await eventually(lambda: feed.processed == 1)
        assert store.rule_batches_processed(VEHICLE) == [1]
        stored = store.events(VEHICLE)
        # Every event the rules stored is announced, under its own id and kind.
        deliveries = await announced.wait_for(len(stored))
        events = {d.msg_id: (d.subject, decode(d.data)) for d in deliveries}
        assert set(events) == {event.id for event in stored}
        for subject, event in events.values():
            assert isinstance(event, RuleEvent)
            assert subject == f"telehub.{tenant}.events.{event.event}"
            assert event.vehicle_id == VEHICLE
        faults = [
            event
            for _, event in events.values()
            if isinstance(event, RuleEvent) and event.event == "fault_set"
        ]
        assert [(event.ts_us, event.details["code"]) for event in faults] == [(ts, "SPN 520 FMI 3")]
        assert (feed.processed, feed.skipped, feed.notifier.failed) == (1, 0, 0)
        await bus.close()  # detaches the feed while the store is still open


async def test_what_the_rules_cannot_use_is_acked_and_counted(
    buses: Buses, tenant: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path / "data", tenants={tenant: TenantSettings(token_secret=SECRET_ACME)}
    )
    bus: EventBus = await buses.open()
    with TenantRegistry(settings) as registry:
        registry.store(tenant).enroll_vehicle(VEHICLE)
        feed = RulesFeed(bus, registry, RulesWorker({}))
        await feed.start([tenant])
        never_stored = BatchCommitted(
            tenant=tenant, vehicle_id=VEHICLE, sequence=9, samples=1, first_ts_us=1, last_ts_us=1
        )
        await bus.publish(batches(tenant), b"not an event", msg_id="junk")
        await bus.publish(never_stored.subject, encode(never_stored), msg_id=never_stored.msg_id)
        await eventually(lambda: feed.skipped == 2)
        await asyncio.sleep(0.2)
        assert bus.counters.failed == 0  # acked, not retried
        assert feed.processed == 0
        await bus.close()


async def test_one_durable_name_serves_every_process(buses: Buses, tenant: str) -> None:
    # The name is what lets several gateway processes share a tenant's batches.
    bus = await buses.open()
    seen = Collector()

    async def handler(delivery: Delivery) -> None:
        await seen(delivery)

    await bus.subscribe(batches(tenant), DURABLE, handler)
    await bus.publish(batches(tenant), b"x", msg_id="1")
    await seen.wait_for(1)
    assert DURABLE == "rules"
