"""Composition root of the cloud: wires settings, tenant stores, the event bus and the gateway.

``serve`` is what ``telehub cloud serve`` runs; ``enroll`` is what an operator
runs to admit a vehicle and hand its agent a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import timedelta

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.errors import UnknownTenant
from cloud.events import EventBus, open_bus
from cloud.retention import run_periodically
from cloud.rules.worker import RulesWorker, configs_from_directory
from cloud.rules_feed import RulesFeed
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry

__all__ = ["enroll", "serve"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve(
    settings: CloudSettings,
    *,
    on_started: Callable[[GatewayServer], None] | None = None,
) -> None:
    """Run the gateway until SIGINT/SIGTERM or cancellation, then shut down gracefully.

    The event bus (``settings.event_bus``) is opened first and closed last, so
    the streams finishing in the grace period still publish their commits. The
    rules run here too, fed from the bus (``cloud.rules_feed``): with NATS, the
    gateway processes share that work.
    Running streams get ``settings.grace_seconds`` to finish; every tenant store
    is closed afterwards. ``on_started`` receives the running server (its port).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in _STOP_SIGNALS:
        # Only the main thread of a POSIX process can own signals; elsewhere the
        # caller stops serve() by cancelling it.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    registry = TenantRegistry(settings)
    try:
        bus = await open_bus(
            settings.event_bus,
            capacity=settings.event_bus_capacity,
            max_deliver=settings.event_max_deliver,
        )
        try:
            await _serve_with(settings, registry, bus, stop, on_started)
        finally:
            await bus.close()
            logger.info("event bus closed: %s", bus.counters)
    finally:
        registry.close()
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _serve_with(
    settings: CloudSettings,
    registry: TenantRegistry,
    bus: EventBus,
    stop: asyncio.Event,
    on_started: Callable[[GatewayServer], None] | None,
) -> None:
    # The rules' consumers first: a consumer sees what is published after it exists.
    rules = RulesFeed(
        bus,
        registry,
        RulesWorker(configs_from_directory(settings.rules_dir) if settings.rules_dir else {}),
        publish_attempts=settings.event_publish_attempts,
    )
    await rules.start(registry.tenants)
    server = await start_gateway(settings, registry, bus=bus)
    try:
        logger.info(
            "gateway listening on %s for tenants %s, event bus %s",
            server.target,
            ", ".join(registry.tenants) or "(none)",
            settings.event_bus,
        )
        if on_started is not None:
            on_started(server)
        retention = asyncio.create_task(run_periodically(settings, registry), name="retention")
        try:
            await stop.wait()
        finally:
            retention.cancel()
            await asyncio.wait([retention])
        logger.info("stopping the gateway")
    finally:
        # Also on cancellation: the grace period still applies.
        await server.stop(settings.grace_seconds)
        notifier = server.notifier
        logger.info(
            "gateway on %s stopped after %d stream(s); %d commit(s) published, %d not",
            server.target,
            server.streams,
            notifier.published if notifier is not None else 0,
            notifier.failed if notifier is not None else 0,
        )


def enroll(
    settings: CloudSettings, tenant: str, vehicle_id: str, *, ttl: timedelta | None = None
) -> str:
    """Enroll ``vehicle_id`` in ``tenant``'s store (idempotent) and return a token for it."""
    tenant_settings = settings.tenants.get(tenant)
    if tenant_settings is None:
        raise UnknownTenant(f"tenant {tenant!r} is not configured")
    with TenantRegistry(settings) as registry:
        registry.store(tenant).enroll_vehicle(vehicle_id)
    return issue_token(tenant, vehicle_id, tenant_settings.token_secret, ttl=ttl)
