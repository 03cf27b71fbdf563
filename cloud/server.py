"""The running gateway: a grpc.aio server with the telemetry and health services.

``start_gateway`` binds ``settings.listen`` (port 0 picks a free port), serves
``telehub.v1.TelemetryGateway`` and the standard ``grpc.health.v1.Health``
service, and returns a ``GatewayServer`` whose ``stop`` first reports
NOT_SERVING (so load balancers stop routing new vehicles here) and then lets
running streams finish for the grace period. Its ``control`` service sets
plans and consent and reaches this server's live sessions at once.
"""

from __future__ import annotations

import asyncio
import re
from types import TracebackType

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The asyncio servicer, published as ``grpc_health.v1.health.aio``; the typing
# stubs only describe the threaded one, so import its module directly.
from grpc_health.v1._async import HealthServicer

from cloud.auth import TokenVerifier
from cloud.config import CloudSettings
from cloud.control import ControlHub, ControlPoller, ControlService
from cloud.errors import ListenError
from cloud.events import CommitNotifier, EventBus
from cloud.gateway import TelemetryGatewayServicer
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc

__all__ = ["GATEWAY_SERVICE", "GatewayServer", "start_gateway"]

#: Fully qualified name of the telemetry service, as the health service reports it.
GATEWAY_SERVICE: str = telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryGateway"].full_name

_WILDCARD_HOSTS = {"0.0.0.0", "[::]", "::", ""}  # noqa: S104 - recognised, not bound


class GatewayServer:
    """A started gateway; stop it with ``stop`` or by leaving ``async with``."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: HealthServicer,
        target: str,
        control: ControlService,
        poller: asyncio.Task[None] | None = None,
        notifier: CommitNotifier | None = None,
        servicer: TelemetryGatewayServicer | None = None,
    ) -> None:
        self._servicer = servicer
        self._server = server
        self._notifier = notifier
        self._health = health_servicer
        self._target = target
        self._control = control
        self._poller = poller
        self._stopped = False
        self._stop_lock = asyncio.Lock()

    @property
    def target(self) -> str:
        """Address a client on this machine dials, e.g. ``127.0.0.1:50051``."""
        return self._target

    @property
    def port(self) -> int:
        """The bound TCP port (the one picked when ``listen`` asked for port 0)."""
        return int(self._target.rsplit(":", 1)[1])

    @property
    def control(self) -> ControlService:
        """Sets plans and consent; this server's live sessions hear of it at once."""
        return self._control

    @property
    def streams(self) -> int:
        """Vehicle streams this server opened since it started."""
        return self._servicer.streams if self._servicer is not None else 0

    @property
    def notifier(self) -> CommitNotifier | None:
        """Publishes commits to the event bus and counts failures; ``None`` without a bus."""
        return self._notifier

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` has completed."""
        return self._stopped

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting streams, give running ones ``grace`` seconds, then cancel them.

        Calling it again (or concurrently) waits for the first stop and does nothing more.
        """
        async with self._stop_lock:
            if self._stopped:
                return
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            if self._poller is not None:
                self._poller.cancel()
                await asyncio.wait([self._poller])
            self._stopped = True

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped."""
        await self._server.wait_for_termination()

    async def __aenter__(self) -> GatewayServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_gateway(
    settings: CloudSettings,
    registry: TenantRegistry,
    *,
    verifier: TokenVerifier | None = None,
    hub: ControlHub | None = None,
    bus: EventBus | None = None,
) -> GatewayServer:
    """Bind ``settings.listen`` and start serving; the registry stays the caller's to close.

    ``hub`` connects control changes to the live sessions; by default the server
    has its own (reach it through ``GatewayServer.control``). With a ``bus``
    (the caller's to close, after the server), every committed batch and fault
    report is published on it; ``GatewayServer.notifier`` counts what was not.
    """
    hub = hub if hub is not None else ControlHub()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            # Agents on mobile networks ping to keep NAT mappings alive; allow
            # pings every 10 s (the default would answer them with GOAWAY).
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            # And detect cars that vanished without closing their stream.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ],
    )
    notifier = (
        CommitNotifier(bus, attempts=settings.event_publish_attempts) if bus is not None else None
    )
    servicer = TelemetryGatewayServicer(
        registry,
        verifier if verifier is not None else TokenVerifier(settings.token_secrets()),
        max_batch_samples=settings.max_batch_samples,
        hub=hub,
        control_poll_seconds=settings.control_poll_seconds,
        notifier=notifier,
    )
    telemetry_pb2_grpc.add_TelemetryGatewayServicer_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    try:
        port = server.add_insecure_port(settings.listen)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {settings.listen}: {exc}") from exc
    if port == 0:  # older grpc versions report a failed bind this way
        raise ListenError(f"cannot listen on {settings.listen}")
    await server.start()
    for service in ("", GATEWAY_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    poller = ControlPoller(registry, hub, settings.control_poll_seconds)
    return GatewayServer(
        server,
        health_servicer,
        _dial_target(settings.listen, port),
        ControlService(registry, hub),
        asyncio.create_task(poller.run(), name="control-poller"),
        notifier,
        servicer,
    )


def _dial_target(listen: str, port: int) -> str:
    host = re.sub(r":\d+$", "", listen)
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"{host}:{port}"
