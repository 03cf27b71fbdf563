"""``telehub cloud serve --workers 2``: two gateway processes on one port, stopped by SIGTERM.

With NATS configured, both workers publish their commits to the one bus, where
a single durable consumer sees them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from cloud.app import enroll
from cloud.config import TenantSettings
from cloud.events.jetstream import NatsBus
from cloud.events.subjects import batches
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2_grpc
from tests.cloud.conftest import SECRET_ACME, make_settings
from tests.cloud.events.conftest import Collector
from tests.cloud.messages import batch, exchange, hello, samples_for
from tools.cli import main

VEHICLES = [f"car-{n:02}" for n in range(16)]


@pytest.fixture
def tenant() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def event_bus(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("nats_url")
    return url


@pytest.fixture
def environment(tenant: str, event_bus: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELEHUB_")}
    env["TELEHUB_TENANTS"] = json.dumps({tenant: {"token_secret": SECRET_ACME.get_secret_value()}})
    env["TELEHUB_GRACE_SECONDS"] = "1"
    env["TELEHUB_EVENT_BUS"] = event_bus
    return env


@pytest.fixture
async def listener(event_bus: str, tenant: str) -> AsyncIterator[Collector | None]:
    """A consumer of the tenant's batch notifications on NATS (``None`` in memory)."""
    if event_bus == "memory":
        yield None
        return
    bus = NatsBus(ack_wait=5.0, fetch_wait=0.2)
    await bus.connect(event_bus)
    collector = Collector()
    await bus.subscribe(batches(tenant), "workers-test", collector)
    yield collector
    await bus.remove_tenant(tenant)
    await bus.close()


@pytest.fixture
async def supervisor(
    tmp_path: Path, environment: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "-v",
        "cloud",
        "serve",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "data"),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # A group of its own, so a failed test can end the supervisor and its workers.
        start_new_session=True,
    )
    yield process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def _stream(target: str, vehicle: str, token: str) -> list[int]:
    # A channel of its own for each vehicle, as separate cars have: its own TCP
    # connection, which the kernel hands to either worker.
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        outcome = await exchange(
            telemetry_pb2_grpc.TelemetryGatewayStub(channel),
            [hello(vehicle), batch(1, samples_for(1)), batch(2, samples_for(2))],
            token=token,
        )
    assert outcome.code == grpc.StatusCode.OK, outcome.details
    return [ack.sequence for ack in outcome.acks]


async def test_two_workers_share_the_port_and_stop_on_sigterm(
    tmp_path: Path,
    tenant: str,
    listener: Collector | None,
    supervisor: asyncio.subprocess.Process,
) -> None:
    settings = make_settings(
        tmp_path / "data", tenants={tenant: TenantSettings(token_secret=SECRET_ACME)}
    )
    tokens = {vehicle: enroll(settings, tenant, vehicle) for vehicle in VEHICLES}
    assert supervisor.stdout is not None
    assert supervisor.stderr is not None
    line = (await asyncio.wait_for(supervisor.stdout.readline(), 30)).decode()
    match = re.fullmatch(r"2 gateway workers listening on (127\.0\.0\.1:\d+)\n", line)
    assert match is not None, line
    target = match[1]

    acks = await asyncio.wait_for(
        asyncio.gather(*(_stream(target, vehicle, tokens[vehicle]) for vehicle in VEHICLES)), 60
    )
    assert acks == [[1, 2]] * len(VEHICLES)

    supervisor.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(supervisor.wait(), 30) == 0
    log = (await supervisor.stderr.read()).decode()
    served = [int(n) for n in re.findall(r"stopped after (\d+) stream\(s\)", log)]
    # Both workers took streams, and together all of them.
    assert len(served) == 2, log
    assert sum(served) == len(VEHICLES)
    assert min(served) > 0, served
    with TenantRegistry(settings) as registry:
        store = registry.store(tenant)
        assert sum(store.batch_count(vehicle) for vehicle in VEHICLES) == 2 * len(VEHICLES)
    if listener is not None:
        seen = await listener.wait_for(2 * len(VEHICLES))
        assert {d.msg_id for d in seen} == {f"{v}:{n}" for v in VEHICLES for n in (1, 2)}
        published = [int(n) for n in re.findall(r"; (\d+) commit\(s\) published, 0 not", log)]
        assert sorted(published) == sorted(2 * n for n in served)


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cloud", "serve", "--workers", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
