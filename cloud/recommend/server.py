"""The recommendation API on uvicorn: a server that can be started, awaited and stopped.

:class:`RecommendServer` binds its socket itself (so ``port`` 0 gives a free
port known before the first request), runs uvicorn in a task of the running
loop, and stops gracefully: open requests get ``grace_seconds`` to finish.
uvicorn's own access log is off: ours (``telehub.recommend.access``) never
writes a query string, a position or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from cloud.errors import ListenError

__all__ = ["RecommendServer"]


class RecommendServer:
    """``async with RecommendServer(app, host, port) as server: ... server.port``."""

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, grace_seconds: float = 5.0
    ) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=False,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=max(1, round(grace_seconds)),
            # Head units keep one connection; the load generator many.
            timeout_keep_alive=30,
            # Nothing to tell a client about the software that answers it.
            server_header=False,
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = host
        self.port = port

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="recommend-api")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise ListenError("the recommendation API stopped while starting")
            await asyncio.sleep(0.01)

    async def wait(self) -> None:
        """Until the server stops (a signal, or :meth:`stop`)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop gracefully; calling it again does nothing."""
        task, self._task = self._task, None
        if task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
