"""The composition root: serve() until stopped, enroll() a vehicle."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio
import jwt
import pytest

from cloud.app import enroll, serve
from cloud.auth import TokenVerifier
from cloud.config import CloudSettings
from cloud.domain import VehicleIdentity
from cloud.errors import UnknownTenant
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2_grpc
from tests.cloud.conftest import make_settings
from tests.cloud.messages import batch, exchange, hello, samples_for


def test_enroll_admits_the_vehicle_and_returns_its_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    token = enroll(settings, "globex", "car-9", ttl=timedelta(days=30))
    assert enroll(settings, "globex", "car-9")  # again: idempotent
    verifier = TokenVerifier(settings.token_secrets())
    assert verifier.verify(token) == VehicleIdentity("globex", "car-9")
    assert "exp" in jwt.decode(token, options={"verify_signature": False})
    with TenantRegistry(settings) as registry:
        assert registry.store("globex").is_enrolled("car-9")
        assert not registry.store("acme").is_enrolled("car-9")


def test_enroll_in_unknown_tenant(tmp_path: Path) -> None:
    with pytest.raises(UnknownTenant, match="'initech'"):
        enroll(make_settings(tmp_path), "initech", "car-9")


async def _serve_until_started(
    settings: CloudSettings,
) -> tuple[asyncio.Task[None], GatewayServer]:
    started: asyncio.Queue[GatewayServer] = asyncio.Queue()
    task = asyncio.create_task(serve(settings, on_started=started.put_nowait))
    server = await asyncio.wait_for(started.get(), 5)
    return task, server


async def _round_trip(server: GatewayServer, token: str) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = telemetry_pb2_grpc.TelemetryGatewayStub(channel)
        outcome = await exchange(stub, [hello("car-1"), batch(1, samples_for(1))], token=token)
    assert outcome.code == grpc.StatusCode.OK
    assert [ack.sequence for ack in outcome.acks] == [1]


async def test_serve_runs_until_cancelled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    token = enroll(settings, "acme", "car-1")
    task, server = await _serve_until_started(settings)
    await _round_trip(server, token)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert server.stopped


async def test_serve_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    token = enroll(settings, "acme", "car-1")
    task, server = await _serve_until_started(settings)
    await _round_trip(server, token)
    # serve() installed its handler before reporting started, so this reaches it.
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 5)
    assert server.stopped
    # The handler is removed again: the default disposition is back.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
