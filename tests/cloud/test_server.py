"""GatewayServer lifecycle: binding, health service, graceful and idempotent stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud.config import CloudSettings
from cloud.errors import ListenError
from cloud.server import GATEWAY_SERVICE, GatewayServer, start_gateway
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2_grpc
from tests.cloud.conftest import VEHICLE, make_settings
from tests.cloud.messages import batch, exchange, hello, open_stream, reply_of, samples_for


def test_service_name() -> None:
    assert GATEWAY_SERVICE == "telehub.v1.TelemetryGateway"


def test_port_and_target(gateway: GatewayServer) -> None:
    assert gateway.port > 0
    assert gateway.target == f"127.0.0.1:{gateway.port}"


@pytest.mark.parametrize("service", ["", GATEWAY_SERVICE])
async def test_health_reports_serving(channel: grpc.aio.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stop_reports_not_serving_and_is_idempotent(
    settings: CloudSettings, registry: TenantRegistry
) -> None:
    server = await start_gateway(settings, registry)
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=GATEWAY_SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(1.0))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.gather(stopping, server.stop(), server.stop(0))
        assert server.stopped
    await server.stop()
    await asyncio.wait_for(server.wait_for_termination(), 1)


async def test_graceful_stop_lets_a_running_stream_finish(
    settings: CloudSettings, registry: TenantRegistry, token: str
) -> None:
    server = await start_gateway(settings, registry)
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = open_stream(telemetry_pb2_grpc.TelemetryGatewayStub(channel), token)
        await call.write(hello(VEHICLE))
        assert (await reply_of(call)).HasField("welcome")
        stopping = asyncio.create_task(server.stop(5.0))
        await asyncio.sleep(0.05)
        await call.write(batch(1, samples_for(1)))
        assert (await reply_of(call)).ack.sequence == 1
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 5)
    assert registry.store("acme").count_samples(VEHICLE) == 30


async def test_async_context_manager_stops(
    settings: CloudSettings, registry: TenantRegistry
) -> None:
    async with (
        await start_gateway(settings, registry) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stub = telemetry_pb2_grpc.TelemetryGatewayStub(channel)
        outcome = await exchange(stub, [hello(VEHICLE)], token=None)
        assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
    assert server.stopped


async def test_busy_port_is_a_listen_error(tmp_path: Path, registry: TenantRegistry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(tmp_path, listen=f"127.0.0.1:{port}")
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_gateway(settings, registry)
