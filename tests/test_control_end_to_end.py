"""Plans and consent from the cloud to a running agent, end to end.

A real agent reads a python-can virtual bus fed with frames of the drive
recording; the real gateway pushes a new plan and then a consent withdrawal
while it runs. The store must show, chunk by chunk, exactly what each phase
allowed, and the car's reports must say which plan and consent it runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import can
import pytest

from cloud.auth import issue_token
from cloud.domain import Purpose as CloudPurpose
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from tests.test_end_to_end import SECRET, TENANT, recording, stored_rows
from vehicle_agent.app import Agent
from vehicle_agent.decoding import Decoder
from vehicle_agent.outbox import Outbox
from vehicle_agent.sources import BusSource

VEHICLE = "CTRL-1"


def _frames(count: int) -> Iterator[can.Message]:
    rec = recording("DEMO-CAR-0001")
    with can.LogReader(rec.log) as reader:
        yield from islice(reader, count)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    # The state lives in other threads (the gateway's store writes, the agent's
    # reader): look every 50 ms, for 20 s at most.
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting until {what}")


@pytest.mark.slow
async def test_a_plan_and_a_consent_withdrawal_reach_the_running_car(
    gateway: GatewayServer, registry: TenantRegistry, tmp_path: Path
) -> None:
    rec = recording("DEMO-CAR-0001")
    store = registry.store(TENANT)
    store.enroll_vehicle(VEHICLE)
    channel = f"telehub-ctrl-{uuid.uuid4().hex}"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    agent = Agent(
        vehicle_id=VEHICLE,
        token=issue_token(TENANT, VEHICLE, SECRET),
        gateway=gateway.target,
        decoder=Decoder(rec.dbcs),
        source=BusSource("virtual", channel),
        queue=outbox,
        batch_max_samples=200,
        batch_max_age=0.1,
    )
    run = asyncio.create_task(agent.run(drain_timeout=30))
    frames = list(_frames(6000))
    chunks = [frames[:2000], frames[2000:4000], frames[4000:]]
    control = gateway.control

    def status() -> tuple[int, int]:
        report = control.vehicle_status(TENANT, VEHICLE).reported
        return (0, 0) if report is None else (report.running_version, report.consent_version)

    def acked() -> int:
        return agent.queue.stats.acked_samples

    try:
        with can.Bus(interface="virtual", channel=channel) as bus:
            await _until(lambda: agent.uplink.connected.is_set(), "the agent connects")
            for msg in chunks[0]:
                bus.send(msg)
            await _until(lambda: acked() > 0 and len(agent.queue) == 0, "phase 1 stored")
            await asyncio.sleep(0.3)
            phase1 = acked()

            version = await asyncio.to_thread(
                control.set_plan,
                TENANT,
                VEHICLE,
                {
                    "name": "speed and position",
                    "signals": [
                        {"signal": "gnss_speed.Speed", "purpose": "analytics"},
                        {"signal": "gnss_status.Satellites", "purpose": "diagnostics"},
                    ],
                },
            )
            await _until(lambda: status()[0] == version, "the car runs the new plan")
            boundaries = [time.time_ns() // 1000]
            for msg in chunks[1]:
                bus.send(msg)
            await _until(lambda: acked() > phase1 and len(agent.queue) == 0, "phase 2")
            await asyncio.sleep(0.3)
            phase2 = acked()

            consent = await asyncio.to_thread(
                control.set_consent, TENANT, VEHICLE, [CloudPurpose.DIAGNOSTICS]
            )
            await _until(lambda: status()[1] == consent, "the car enforces the new consent")
            boundaries.append(time.time_ns() // 1000)
            for msg in chunks[2]:
                bus.send(msg)
            await _until(lambda: acked() > phase2 and len(agent.queue) == 0, "phase 3")
            await asyncio.sleep(0.3)
        agent.stop()
        await asyncio.wait_for(run, 30)
    finally:
        run.cancel()
        outbox.close()

    rows = stored_rows(registry, VEHICLE)
    # The virtual bus stamps each frame when it is sent: the phase of a row is the
    # phase during which its frame went onto the bus.
    names_by_phase: list[set[str]] = [set(), set(), set()]
    for _, name, t, _ in rows:
        phase = sum(t >= b for b in boundaries)
        names_by_phase[phase].add(name)
    assert {"Speed", "Satellites", "Latitude", "Altitude"} <= names_by_phase[0]
    assert names_by_phase[1] == {"Speed", "Satellites"}
    assert names_by_phase[2] == {"Satellites"}
    report = agent.report()
    assert (report.plan_version, report.consent_version) == (version, consent)
