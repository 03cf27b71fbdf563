"""What only the NATS JetStream bus does: streams per tenant, a dead process, a bad URL."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import api

from cloud.errors import BusUnavailable
from cloud.events.jetstream import NatsBus
from cloud.events.subjects import batches, stream_name
from tests.cloud.events.conftest import Collector
from tests.conftest import service_absent

pytestmark = pytest.mark.nats


@pytest.fixture
async def bus(nats_url: str, tenant: str) -> AsyncIterator[NatsBus]:
    bus = NatsBus(capacity=500, ack_wait=1.0, fetch_wait=0.2, retry_delay=0.02)
    await bus.connect(nats_url)
    yield bus
    await bus.close()
    cleaner = NatsBus()
    await cleaner.connect(nats_url)
    await cleaner.remove_tenant(tenant)
    await cleaner.close()


async def test_each_tenant_gets_one_bounded_interest_stream(
    bus: NatsBus, nats_url: str, tenant: str
) -> None:
    await bus.publish(batches(tenant), b"x", msg_id="1")
    second = NatsBus(capacity=500)
    await second.connect(nats_url)
    try:
        await second.publish(batches(tenant), b"y", msg_id="2")  # finds it, creates nothing
    finally:
        await second.close()
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(stream_name(tenant))
    finally:
        await nc.close()
    config = info.config
    assert config.subjects == [f"telehub.{tenant}.>"]
    assert config.retention == api.RetentionPolicy.INTEREST
    assert config.discard == api.DiscardPolicy.NEW
    assert config.max_msgs == 500
    assert config.duplicate_window == pytest.approx(120.0)
    # No consumer was interested: nothing was kept.
    assert info.state.messages == 0


async def test_a_new_connection_gets_what_a_dead_consumer_never_acked(
    bus: NatsBus, nats_url: str, tenant: str
) -> None:
    stuck = asyncio.Event()

    async def hangs(delivery: object) -> None:
        await stuck.wait()

    first = Collector(hangs)
    await bus.subscribe(batches(tenant), "survivor", first)
    await bus.publish(batches(tenant), b"work", msg_id="w")
    await first.wait_for(1)
    await bus.abandon()  # as a killed process: no ack, no nak

    later = NatsBus(ack_wait=1.0, fetch_wait=0.2)
    await later.connect(nats_url)
    try:
        second = Collector()
        started = time.monotonic()
        await later.subscribe(batches(tenant), "survivor", second)
        [again] = await second.wait_for(1)
        assert (again.data, again.attempt) == (b"work", 2)
        # It came back when the server gave up waiting for the ack, not before.
        assert time.monotonic() - started > 0.3
    finally:
        await later.close()


async def test_an_unreachable_server_fails_the_connect() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        bus = NatsBus()
        with pytest.raises(BusUnavailable, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(bus.connect(f"nats://127.0.0.1:{port}", attempts=1), 10)


async def test_a_closed_bus_refuses_to_publish(bus: NatsBus, tenant: str) -> None:
    await bus.close()
    with pytest.raises(BusUnavailable):
        await bus.publish(batches(tenant), b"late", msg_id="1")


# ---------------------------------------------------------------- a server of our own
# Restarting the shared server would disturb every other test: this one runs its own.

NATS_SERVER = Path("/usr/sbin/nats-server")


async def _start_server(port: int, store: Path) -> asyncio.subprocess.Process:
    server = await asyncio.create_subprocess_exec(
        str(NATS_SERVER),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "-sd",
        str(store),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)  # a process starting up has nothing to wait on
                continue
            writer.close()
            await writer.wait_closed()
            return server


async def _stop_server(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.terminate()
        await server.wait()


@pytest.fixture
def free_port() -> int:
    """A port for a NATS server of the test's own (skips when there is no nats-server)."""
    if not NATS_SERVER.exists():
        service_absent(f"{NATS_SERVER} is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_bus_reconnects_after_the_server_restarts(tmp_path: Path, free_port: int) -> None:
    server = await _start_server(free_port, tmp_path / "js")
    bus = NatsBus(publish_timeout=0.5, fetch_wait=0.2, ack_wait=2.0)
    try:
        await bus.connect(f"nats://127.0.0.1:{free_port}")
        collector = Collector()
        await bus.subscribe(batches("acme"), "through-restart", collector)
        await bus.publish(batches("acme"), b"before", msg_id="1")
        await collector.wait_for(1)

        await _stop_server(server)
        with pytest.raises(BusUnavailable):
            await bus.publish(batches("acme"), b"while down", msg_id="2")

        server = await _start_server(free_port, tmp_path / "js")  # same store: stream kept
        async with asyncio.timeout(15):
            while True:
                try:
                    await bus.publish(batches("acme"), b"after", msg_id="3")
                    break
                except BusUnavailable:
                    await asyncio.sleep(0.2)  # still reconnecting
        await collector.wait_for(2)
        await asyncio.sleep(0.3)
        # The publish that timed out was kept in the client's buffer and sent on
        # reconnection: "unavailable" means "perhaps not stored", hence msg ids.
        # An ack the stopped server had not yet stored brings "before" again: at
        # least once, which idempotent consumers absorb.
        first_seen = list(dict.fromkeys(collector.data))
        assert first_seen in ([b"before", b"after"], [b"before", b"while down", b"after"])
        assert collector.data.count(b"after") == 1
        assert bus.counters.reconnects >= 1
        assert bus.counters.errors >= 1  # the fetches that failed meanwhile, counted
    finally:
        await bus.close()
        await _stop_server(server)
