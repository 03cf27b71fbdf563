"""The gateway announces what it committed on the event bus: a real grpc.aio server, each bus."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from cloud.app import serve
from cloud.auth import issue_token
from cloud.config import CloudSettings, TenantSettings
from cloud.errors import BusUnavailable
from cloud.events import BatchCommitted, Delivery, EventBus, FaultsCommitted, MemoryBus
from cloud.events.envelope import decode
from cloud.events.jetstream import NatsBus
from cloud.events.subjects import batches, faults
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry, TenantStore
from telehub.v1 import telemetry_pb2_grpc
from tests.cloud.conftest import SECRET_ACME, VEHICLE, make_settings
from tests.cloud.events.conftest import Buses, Collector, eventually
from tests.cloud.messages import batch, dm1, exchange, fault_report, hello, samples_for


@dataclass
class Cloud:
    tenant: str
    bus: EventBus
    gateway: GatewayServer
    store: TenantStore
    stub: telemetry_pb2_grpc.TelemetryGatewayAsyncStub
    token: str


def _settings(tmp_path: Path, tenant: str, **overrides: object) -> CloudSettings:
    return make_settings(
        tmp_path / "data", tenants={tenant: TenantSettings(token_secret=SECRET_ACME)}, **overrides
    )


@pytest.fixture
async def cloud(buses: Buses, tenant: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = _settings(tmp_path, tenant)
    bus = await buses.open()
    with TenantRegistry(settings) as registry:
        store = registry.store(tenant)
        store.enroll_vehicle(VEHICLE)
        gateway = await start_gateway(settings, registry, bus=bus)
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            yield Cloud(
                tenant,
                bus,
                gateway,
                store,
                telemetry_pb2_grpc.TelemetryGatewayStub(channel),
                issue_token(tenant, VEHICLE, SECRET_ACME),
            )
        await gateway.stop(0)


async def test_a_committed_batch_is_announced_after_its_commit(cloud: Cloud) -> None:
    stored_when_announced: list[int] = []

    async def check_store(delivery: Delivery) -> None:
        # The notification may only exist once the batch can be read back.
        stored_when_announced.append(await asyncio.to_thread(cloud.store.count_samples, VEHICLE))

    collector = Collector(check_store)
    await cloud.bus.subscribe(batches(cloud.tenant), "test-batches", collector)
    sent = {sequence: samples_for(sequence, count=40) for sequence in (1, 2)}
    outcome = await exchange(
        cloud.stub,
        [hello(VEHICLE), *(batch(seq, rows) for seq, rows in sent.items())],
        token=cloud.token,
    )
    assert [ack.sequence for ack in outcome.acks] == [1, 2]

    seen = await collector.wait_for(2)
    assert [d.msg_id for d in seen] == [f"{VEHICLE}:1", f"{VEHICLE}:2"]
    events = [decode(d.data) for d in seen]
    assert events == [
        BatchCommitted(
            tenant=cloud.tenant,
            vehicle_id=VEHICLE,
            sequence=seq,
            samples=40,
            first_ts_us=min(ts for _, ts, _ in rows),
            last_ts_us=max(ts for _, ts, _ in rows),
        )
        for seq, rows in sent.items()
    ]
    await eventually(lambda: len(stored_when_announced) == 2)
    assert stored_when_announced[0] >= 40
    assert stored_when_announced[1] == 80
    assert cloud.gateway.notifier is not None
    assert (cloud.gateway.notifier.published, cloud.gateway.notifier.failed) == (2, 0)


async def test_a_resent_batch_is_announced_again_and_delivered_once(cloud: Cloud) -> None:
    collector = Collector()
    await cloud.bus.subscribe(batches(cloud.tenant), "test-resend", collector)
    await exchange(cloud.stub, [hello(VEHICLE), batch(1, samples_for(1))], token=cloud.token)
    # As after a gateway killed between commit and ack: the car sends it again.
    again = await exchange(
        cloud.stub, [hello(VEHICLE), batch(1, samples_for(1))], token=cloud.token
    )
    assert [(ack.sequence, ack.duplicate) for ack in again.acks] == [(1, True)]

    await collector.wait_for(1)
    await asyncio.sleep(0.3)
    assert [d.msg_id for d in collector.seen] == [f"{VEHICLE}:1"]
    assert cloud.bus.counters.publish_duplicates == 1


async def test_a_stored_fault_report_is_announced(cloud: Cloud) -> None:
    collector = Collector()
    await cloud.bus.subscribe(faults(cloud.tenant), "test-faults", collector)
    report = fault_report(5, [dm1("SPN 520 FMI 3"), dm1("SPN 100 FMI 1", spn=100, fmi=1)])
    outcome = await exchange(cloud.stub, [hello(VEHICLE), report], token=cloud.token)
    assert outcome.report_acks == [5]

    [delivery] = await collector.wait_for(1)
    event = decode(delivery.data)
    assert isinstance(event, FaultsCommitted)
    assert (delivery.msg_id, event.report_id, event.new) == (f"{VEHICLE}:faults:5", 5, 2)
    assert [(code.code, code.state, code.bus) for code in event.codes] == [
        ("SPN 520 FMI 3", "set", "powertrain"),
        ("SPN 100 FMI 1", "set", "powertrain"),
    ]


class _DownBus(MemoryBus):
    """A bus that is never reachable."""

    async def publish(self, subject: str, data: bytes, *, msg_id: str) -> None:
        self.counters.errors += 1
        raise BusUnavailable("the bus is down")


async def test_a_bus_that_fails_never_costs_a_stored_batch(tmp_path: Path, tenant: str) -> None:
    settings = _settings(tmp_path, tenant, event_publish_attempts=2)
    bus = _DownBus()
    with TenantRegistry(settings) as registry:
        registry.store(tenant).enroll_vehicle(VEHICLE)
        async with (
            await start_gateway(settings, registry, bus=bus) as gateway,
            grpc.aio.insecure_channel(gateway.target) as channel,
        ):
            outcome = await exchange(
                telemetry_pb2_grpc.TelemetryGatewayStub(channel),
                [hello(VEHICLE), batch(1, samples_for(1)), batch(2, samples_for(2))],
                token=issue_token(tenant, VEHICLE, SECRET_ACME),
            )
        assert outcome.code == grpc.StatusCode.OK
        assert [(ack.sequence, ack.samples_stored) for ack in outcome.acks] == [(1, 30), (2, 30)]
        assert registry.store(tenant).count_samples(VEHICLE) == 60
    assert gateway.notifier is not None
    assert (gateway.notifier.published, gateway.notifier.failed) == (0, 2)
    assert bus.counters.errors == 4  # two attempts for each batch
    await bus.close()


@pytest.mark.nats
async def test_serve_publishes_to_the_nats_server_it_is_configured_with(
    tmp_path: Path, tenant: str, nats_url: str
) -> None:
    settings = _settings(tmp_path, tenant, event_bus=nats_url)
    with TenantRegistry(settings) as registry:
        registry.store(tenant).enroll_vehicle(VEHICLE)
    listener = NatsBus(ack_wait=2.0, fetch_wait=0.2)
    await listener.connect(nats_url)
    try:
        collector = Collector()
        await listener.subscribe(batches(tenant), "worker", collector)
        started: asyncio.Queue[GatewayServer] = asyncio.Queue()
        task = asyncio.create_task(serve(settings, on_started=started.put_nowait))
        server = await asyncio.wait_for(started.get(), 10)
        async with grpc.aio.insecure_channel(server.target) as channel:
            await exchange(
                telemetry_pb2_grpc.TelemetryGatewayStub(channel),
                [hello(VEHICLE), batch(1, samples_for(1))],
                token=issue_token(tenant, VEHICLE, SECRET_ACME),
            )
        [delivery] = await collector.wait_for(1)
        assert decode(delivery.data) == BatchCommitted(
            tenant=tenant,
            vehicle_id=VEHICLE,
            sequence=1,
            samples=30,
            first_ts_us=samples_for(1)[0][1],
            last_ts_us=samples_for(1)[-1][1],
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    finally:
        await listener.remove_tenant(tenant)
        await listener.close()


async def test_serve_fails_to_start_when_its_nats_server_is_unreachable(
    tmp_path: Path, tenant: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = probe.getsockname()[1]
        settings = _settings(tmp_path, tenant, event_bus=f"nats://127.0.0.1:{port}")
        started: list[GatewayServer] = []
        with pytest.raises(BusUnavailable, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(serve(settings, on_started=started.append), 30)
    assert started == []  # no gateway acknowledging batches it cannot announce


async def test_serve_runs_the_rules_on_what_it_commits(tmp_path: Path, tenant: str) -> None:
    settings = _settings(tmp_path, tenant)  # the in-process bus
    with TenantRegistry(settings) as registry:
        store = registry.store(tenant)
        store.enroll_vehicle(VEHICLE)
        started: asyncio.Queue[GatewayServer] = asyncio.Queue()
        task = asyncio.create_task(serve(settings, on_started=started.put_nowait))
        server = await asyncio.wait_for(started.get(), 10)
        async with grpc.aio.insecure_channel(server.target) as channel:
            await exchange(
                telemetry_pb2_grpc.TelemetryGatewayStub(channel),
                [hello(VEHICLE), batch(1, samples_for(1)), batch(2, samples_for(2))],
                token=issue_token(tenant, VEHICLE, SECRET_ACME),
            )
        await eventually(lambda: store.rule_batches_processed(VEHICLE) == [1, 2])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
