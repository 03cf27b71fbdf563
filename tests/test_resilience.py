"""Nothing accepted is lost or stored twice when the cloud goes away mid-stream."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import can
import cantools
import pytest

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.server import start_gateway
from cloud.store import TenantRegistry
from tests.test_end_to_end import (
    SECRET,
    TENANT,
    independent_rows,
    recording,
    stored_rows,
)
from vehicle_agent.app import Agent
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.sources import BusSource, LogSource
from vehicle_agent.uplink import Backoff

DATA = Path(__file__).parent / "data"
FAST_RETRY = Backoff(initial=0.05, maximum=0.2)


@pytest.mark.slow
async def test_gateway_killed_and_restarted_mid_stream_loses_nothing(
    settings: CloudSettings, registry: TenantRegistry
) -> None:
    rec = recording("DEMO-CAR-0001")
    registry.store(TENANT).enroll_vehicle(rec.vehicle_id)
    first = await start_gateway(settings, registry)
    port = first.port
    agent = Agent(
        vehicle_id=rec.vehicle_id,
        token=issue_token(TENANT, rec.vehicle_id, SECRET),
        gateway=first.target,
        decoder=Decoder(rec.dbcs),
        source=LogSource(Path(rec.log)),
        batch_max_samples=200,
        backoff=FAST_RETRY,
    )
    run = asyncio.create_task(agent.run(drain_timeout=120))
    second = None
    try:
        await asyncio.wait_for(agent.queue.wait_for_stats(lambda s: s.acked_batches >= 20), 30)
        assert not run.done(), "the replay finished before the cloud could be killed"
        await first.stop(0)  # no grace: streams and in-flight batches are cut
        await asyncio.sleep(0.3)
        second = await start_gateway(
            settings.model_copy(update={"listen": f"127.0.0.1:{port}"}), registry
        )
        await asyncio.wait_for(run, 120)
    finally:
        run.cancel()
        await first.stop(0)
        if second is not None:
            await second.stop(0)

    report = agent.report()
    assert report.reconnects >= 1
    expected = independent_rows(rec)
    stored = stored_rows(registry, rec.vehicle_id)
    assert Counter(stored) == Counter(expected)
    assert registry.store(TENANT).batch_count(rec.vehicle_id) == report.batches


async def test_agent_on_a_virtual_bus_streams_every_frame(
    settings: CloudSettings, registry: TenantRegistry
) -> None:
    dbc = DATA / "cantools-dbc" / "motohawk.dbc"
    db = cantools.database.load_file(dbc)
    assert isinstance(db, cantools.database.can.Database)
    message = db.get_message_by_name("ExampleMessage")
    channel = f"telehub-test-{uuid.uuid4().hex}"
    registry.store(TENANT).enroll_vehicle("VBUS-1")
    gateway = await start_gateway(settings, registry)
    agent = Agent(
        vehicle_id="VBUS-1",
        token=issue_token(TENANT, "VBUS-1", SECRET),
        gateway=gateway.target,
        decoder=Decoder([DbcSpec(dbc, bus="body")]),
        source=BusSource("virtual", channel),
        batch_max_samples=50,
        batch_max_age=0.1,
    )
    run = asyncio.create_task(agent.run(drain_timeout=30))
    sent: list[float] = []
    try:
        with can.Bus(interface="virtual", channel=channel) as bus:
            for i in range(100):
                values = {
                    "Enable": i % 2,
                    "AverageRadius": (i % 30) / 10,
                    "Temperature": 250 + i / 100,
                }
                data = message.encode(values)
                bus.send(
                    can.Message(arbitration_id=message.frame_id, data=data, is_extended_id=False)
                )
                sent.append(float(values["Temperature"]))
                bus.send(can.Message(arbitration_id=0x7FF, data=b"\x00"))  # unknown id: counted
        await asyncio.wait_for(agent.queue.wait_for_stats(lambda s: s.acked_samples >= 300), 30)
        agent.stop()
        await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
        await gateway.stop(0)

    report = agent.report()
    assert report.frames_read == 200
    assert report.skipped.get("unknown_id") == 100
    stored = stored_rows(registry, "VBUS-1")
    assert len(stored) == 300
    temps = [v for (_, name, _, v) in sorted(stored, key=lambda r: r[2]) if name == "Temperature"]
    assert temps == pytest.approx(sent, abs=0.01)  # the DBC's scale is 0.01 degC
