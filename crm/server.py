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
from collections.abc import Iterator

import uvicorn

from cloud.config import CloudSettings
from cloud.store import TenantRegistry
from crm.api.app import create_app
from crm.config import CrmSettings
from crm.errors import CrmError
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

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self._server = server
        self._task = task

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


def _config(settings: CrmSettings, stores: CrmStores) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, stores),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(settings.grace_seconds) or None,
    )


async def start_crm(settings: CrmSettings, stores: CrmStores) -> CrmServer:
    """Serve in this loop until ``stop()``."""
    server = _Server(_config(settings, stores))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise CrmError(f"the CRM could not listen on {settings.listen}")
        await asyncio.sleep(0.01)
    return CrmServer(server, task)


async def serve(settings: CrmSettings, cloud: CloudSettings) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully and return."""
    loop = asyncio.get_running_loop()
    with TenantRegistry(cloud) as registry:
        server = await start_crm(settings, CrmStores(registry))
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            _log.warning("CRM listening on %s", server.url)
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await server.stop()
