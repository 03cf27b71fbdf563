"""Serving the CRM over HTTP with uvicorn, in the caller's event loop.

``start_crm`` binds (port 0 picks a free one), waits until uvicorn accepts
connections and returns a ``CrmServer`` whose ``stop()`` shuts down
gracefully: no new connections, open requests get ``grace_seconds`` to finish,
then the app's lifespan ends (the webhook sender stops, the audit writer
drains). ``serve`` runs until SIGINT or SIGTERM, then makes the same stop and
returns (the command exits 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from cloud.config import CloudSettings
from cloud.events import EventBus, open_bus
from cloud.store import TenantRegistry
from crm.api.app import create_app
from crm.api.deps import Services
from crm.config import CrmSettings
from crm.errors import CrmError
from crm.feed import LeadFeed
from crm.leads import LeadService
from crm.store import CrmStores

__all__ = ["CrmServer", "serve", "start_crm"]

_log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides what a signal means.

    (uvicorn re-raises a signal it caught after its graceful stop, so a SIGTERM would
    end the process as killed by it instead of exiting 0.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CrmServer:
    """A running uvicorn server of the CRM app."""

    def __init__(
        self, server: uvicorn.Server, task: asyncio.Task[None], services: Services
    ) -> None:
        self._server = server
        self._task = task
        self.services = services

    @property
    def port(self) -> int:
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Graceful stop; calling it again does nothing."""
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self) -> None:
        await self._task


def _config(app: FastAPI, settings: CrmSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(settings.grace_seconds) or None,
    )


async def start_crm(settings: CrmSettings, stores: CrmStores) -> CrmServer:
    """Serve in this loop until ``stop()``."""
    app = create_app(settings, stores)
    server = _Server(_config(app, settings))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise CrmError(f"the CRM could not listen on {settings.listen}")
        await asyncio.sleep(0.01)
    return CrmServer(server, task, app.state.services)


async def serve(
    settings: CrmSettings,
    cloud: CloudSettings,
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[CrmServer], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (by default: until SIGINT or SIGTERM), then stop
    gracefully and return. ``on_started`` is called once the server listens and the
    event consumers are attached.

    With a NATS event bus (``TELEHUB_EVENT_BUS``) the process also consumes the
    tenants' rule events (``crm.feed.LeadFeed``): leads open as the cloud's rules
    raise events. The in-process bus lives in the gateway's own process, so a CRM
    serving on its own has none to consume.
    """
    with TenantRegistry(cloud) as registry:
        stores = CrmStores(registry)
        server = await start_crm(settings, stores)
        bus: EventBus | None = None
        try:
            if cloud.event_bus != "memory":
                bus = await open_bus(
                    cloud.event_bus,
                    capacity=cloud.event_bus_capacity,
                    max_deliver=cloud.event_max_deliver,
                )
                leads = LeadService(stores, opened=server.services.wake_sender)
                await LeadFeed(bus, leads).start(registry.tenants)
            _log.warning("CRM listening on %s", server.url)
            if on_started is not None:
                on_started(server)
            await (_until_signalled() if stop is None else stop.wait())
        finally:
            if bus is not None:
                await bus.close()
            await server.stop()


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    try:
        await signalled.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
