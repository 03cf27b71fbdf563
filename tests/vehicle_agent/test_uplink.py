"""The uplink against the real gateway on loopback: acks, rejects, refusals, wire shape."""

from __future__ import annotations

import asyncio
from itertools import accumulate
from pathlib import Path

import pytest

from cloud.auth import issue_token
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from tests.test_end_to_end import SECRET, TENANT, stored_rows
from vehicle_agent import wire
from vehicle_agent.batching import Batch
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import UplinkError
from vehicle_agent.uplink import Backoff, Uplink

DBC = Path(__file__).parent.parent / "data" / "cantools-dbc" / "motohawk.dbc"


def batch(catalog_id: int, indices: list[int], start_us: int = 1_700_000_000_000_000) -> Batch:
    b = Batch(catalog_id)
    for n, index in enumerate(indices):
        b.append(index, start_us + n * 1000, float(n))
    return b


def make_uplink(gateway: GatewayServer, token: str, buffer: BatchBuffer) -> Uplink:
    decoder = Decoder([DbcSpec(DBC)])
    return Uplink(
        gateway.target,
        token,
        "UP-1",
        decoder.catalog,
        buffer,
        agent_version="test",
        backoff=Backoff(initial=0.01, maximum=0.05),
    )


def test_wire_batch_reconstructs_timestamps() -> None:
    b = batch(5, [0, 1, 2])
    b.timestamp_us[2] = b.timestamp_us[0] - 7  # out of order is allowed: deltas are signed
    b.sequence = 3
    msg = wire.telemetry(b).batch
    assert msg.sequence == 3
    assert msg.catalog_id == 5
    times = list(accumulate(msg.time_delta_us, initial=msg.base_time_us))[1:]
    assert times == list(b.timestamp_us)
    with pytest.raises(ValueError, match="numbered"):
        wire.telemetry(batch(5, [0]))


async def test_every_batch_acked_and_a_rejected_batch_does_not_block_the_rest(
    gateway: GatewayServer, registry: TenantRegistry
) -> None:
    registry.store(TENANT).enroll_vehicle("UP-1")
    buffer = BatchBuffer(16)
    uplink = make_uplink(gateway, issue_token(TENANT, "UP-1", SECRET), buffer)
    catalog_id = uplink.catalog.catalog_id
    await buffer.put(batch(catalog_id, [0, 1, 2]))
    await buffer.put(batch(catalog_id, [0, 9_999]))  # index outside the catalog: refused for good
    await buffer.put(batch(catalog_id, [1, 2], start_us=1_700_000_001_000_000))
    task = asyncio.create_task(uplink.run())
    try:
        await asyncio.wait_for(buffer.wait_empty(), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert buffer.stats.rejected_batches == 1
    assert buffer.stats.rejected_samples == 2
    assert buffer.stats.acked_samples == 5
    assert uplink.stats.reconnects >= 1
    assert len(stored_rows(registry, "UP-1")) == 5


async def test_a_refused_credential_ends_the_uplink_with_a_clear_error(
    gateway: GatewayServer, registry: TenantRegistry
) -> None:
    registry.store(TENANT).enroll_vehicle("UP-1")
    wrong = issue_token(TENANT, "UP-1", type(SECRET)("x" * 40))
    uplink = make_uplink(gateway, wrong, BatchBuffer(4))
    with pytest.raises(UplinkError, match="UNAUTHENTICATED"):
        await asyncio.wait_for(uplink.run(), 20)


async def test_a_vehicle_not_enrolled_is_refused(gateway: GatewayServer) -> None:
    uplink = make_uplink(gateway, issue_token(TENANT, "UP-1", SECRET), BatchBuffer(4))
    with pytest.raises(UplinkError, match="NOT_FOUND"):
        await asyncio.wait_for(uplink.run(), 20)


async def test_unreachable_gateway_is_retried_with_backoff() -> None:
    buffer = BatchBuffer(4)
    decoder = Decoder([DbcSpec(DBC)])
    uplink = Uplink(
        "127.0.0.1:9",  # discard port: nothing listens
        "token",
        "UP-1",
        decoder.catalog,
        buffer,
        agent_version="test",
        backoff=Backoff(initial=0.01, maximum=0.02),
    )
    task = asyncio.create_task(uplink.run())
    await asyncio.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert uplink.stats.reconnects >= 2
    assert uplink.stats.sessions == 0
    assert "UNAVAILABLE" in uplink.stats.last_error
