"""``telehub cloud serve --workers N``: N gateway processes on one port, one set of stores and bus.

Each worker is a whole ``telehub cloud serve`` process (one event loop, one
core's worth of Python). All of them listen on the same address: gRPC binds
with SO_REUSEPORT, so the kernel spreads new connections over the workers and
a client needs one address, not a load balancer over consecutive ports. A
vehicle keeps its one long-lived stream on the worker that took it.

The supervisor, this module:

- turns port 0 into one free port by binding a SO_REUSEPORT socket itself and
  keeping it (bound, never listening, so it takes no connections) while the
  workers run: every worker gets that port and no other program can take it;
- opens every tenant store once before the workers start, so the migrations
  run once instead of racing in N processes;
- announces the address only once every worker printed its ``listening on``
  line (a worker says nothing else on stdout);
- on SIGINT or SIGTERM sends SIGTERM to every worker, which then stops
  gracefully (``grace_seconds``), and kills any still running after
  ``grace_seconds`` plus a margin;
- when a worker dies on its own, stops the others and returns 1: restarting
  is the service manager's decision (systemd, Kubernetes), not ours. A
  supervisor killed with SIGKILL leaves its workers running; stop the process
  group (``kill -- -PGID``) then.

Workers share what the settings name: the tenant databases and the event bus.
With the in-process bus (``memory``) each worker has a bus of its own, so
workers in other processes would not hear of its commits: use NATS for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable

from cloud.config import CloudSettings
from cloud.errors import CloudError
from cloud.store import TenantRegistry

__all__ = ["WorkerFailed", "run_workers"]

logger = logging.getLogger(__name__)

#: Seconds a worker gets beyond its grace period to exit before it is killed.
_EXIT_MARGIN = 5.0
#: Seconds a worker may take to import, open its stores and bind.
_START_SECONDS = 60.0


class WorkerFailed(CloudError):
    """A gateway worker did not start."""


async def run_workers(
    settings: CloudSettings,
    count: int,
    *,
    verbose: int = 0,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Run ``count`` gateway workers until SIGINT/SIGTERM; 0 if all stopped cleanly.

    ``on_listening`` receives the address every worker listens on.
    """
    if count < 1:
        raise ValueError("at least one worker")
    if settings.event_bus == "memory" and count > 1:
        logger.warning(
            "%d workers with the in-process event bus: each has its own; "
            "set TELEHUB_EVENT_BUS=nats://... to share one",
            count,
        )
    with TenantRegistry(settings) as registry:
        for tenant in registry.tenants:
            registry.store(tenant)  # migrated here, once
    reserved, listen = _reserve(settings.listen)
    with reserved if reserved is not None else contextlib.nullcontext():
        command = [
            sys.executable,
            "-m",
            "tools.cli",
            *(["-v"] * verbose),
            "cloud",
            "serve",
            "--listen",
            listen,
            "--data-dir",
            str(settings.data_dir),
        ]
        workers = [
            await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            for _ in range(count)
        ]
        try:
            await _started(workers)
        except BaseException:
            await _stop(workers, settings.grace_seconds + _EXIT_MARGIN)
            raise
        if on_listening is not None:
            on_listening(listen)
        return await _supervise(workers, settings.grace_seconds + _EXIT_MARGIN)


async def _started(workers: list[asyncio.subprocess.Process]) -> None:
    """Wait until every worker said it listens (its one line on stdout)."""
    for worker in workers:
        assert worker.stdout is not None  # piped above
        line = await asyncio.wait_for(worker.stdout.readline(), _START_SECONDS)
        if not line.startswith(b"listening on "):
            raise WorkerFailed(f"worker {worker.pid} did not start (exit code {worker.returncode})")


def _reserve(listen: str) -> tuple[socket.socket | None, str]:
    """``listen`` with port 0 replaced by a free port, and the socket that holds it."""
    host, _, port = listen.rpartition(":")
    if int(port) != 0:
        return None, listen
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bare, 0))
    except OSError:
        sock.close()
        raise
    return sock, f"{host}:{sock.getsockname()[1]}"


async def _supervise(workers: list[asyncio.subprocess.Process], exit_seconds: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    exits = {asyncio.ensure_future(worker.wait()): worker for worker in workers}
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
        died = [exits[task] for task in done if task is not stopping]
        for worker in died:
            logger.error(
                "worker %d exited with %s; stopping the others", worker.pid, worker.returncode
            )
        await _stop(workers, exit_seconds)
    finally:
        stopping.cancel()
        await asyncio.wait({stopping, *exits})
        for signum in installed:
            loop.remove_signal_handler(signum)
    if died:
        return 1
    return 0 if all(worker.returncode == 0 for worker in workers) else 1


async def _stop(workers: list[asyncio.subprocess.Process], exit_seconds: float) -> None:
    """SIGTERM to every running worker; SIGKILL to those still running after ``exit_seconds``."""
    running = [worker for worker in workers if worker.returncode is None]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    if not running:
        return
    exits = [asyncio.ensure_future(worker.wait()) for worker in running]
    _, late = await asyncio.wait(exits, timeout=exit_seconds)
    for worker in running:
        if worker.returncode is None:
            logger.error("worker %d did not stop in %.0f s; killed", worker.pid, exit_seconds)
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
    if late:
        await asyncio.wait(late)
