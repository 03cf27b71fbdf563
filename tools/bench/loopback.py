"""A loopback cloud gateway in a child process, so its CPU time is not the agent's.

:class:`LoopbackCloud` starts the real gateway (one tenant, a SQLite store in a
given folder) on ``127.0.0.1`` in a ``spawn``-ed process and talks to it over a
pipe: it enrolls vehicles, counts what the store holds for one, and stops it.
Tokens are issued here, with the tenant secret this side chose. The child is
``spawn``-ed, so it imports the caller's main module again: a script that
starts a :class:`LoopbackCloud` needs the ``if __name__ == "__main__"`` guard.
The tenant's store is a SQLite file in the folder, or the database at
``database_url`` (PostgreSQL, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import SecretStr

from cloud.auth import issue_token

__all__ = ["TENANT", "CloudProcessError", "LoopbackCloud"]

TENANT = "bench"

#: Seconds to wait for the gateway to come up, or for any answer.
_TIMEOUT = 60.0
#: Seconds the child gets to stop before it is terminated.
_STOP_TIMEOUT = 15.0


class CloudProcessError(Exception):
    """The loopback cloud did not start, died, or answered with an error."""


class LoopbackCloud:
    """The gateway in a child process; use as a context manager (stop is idempotent)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        secret: SecretStr | None = None,
    ) -> None:
        self._secret = secret or SecretStr(secrets.token_urlsafe(32))
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=_child,
            args=(child_conn, str(data_dir), self._secret.get_secret_value(), database_url),
            name="telehub-bench-cloud",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self._stopped = False
        try:
            target = self._answer()
        except BaseException:
            self.stop()
            raise
        if not isinstance(target, str):
            self.stop()
            raise CloudProcessError(f"unexpected answer from the cloud process: {target!r}")
        self.target = target

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def enroll(self, vehicle_id: str) -> str:
        """Enroll *vehicle_id* and return its token."""
        self._ask("enroll", vehicle_id)
        return issue_token(TENANT, vehicle_id, self._secret)

    def enroll_many(self, vehicle_ids: list[str]) -> list[str]:
        """Enroll every vehicle of *vehicle_ids* at once; their tokens, in the same order."""
        self._ask("enroll_many", vehicle_ids)
        return [issue_token(TENANT, vehicle_id, self._secret) for vehicle_id in vehicle_ids]

    def count_samples(self, vehicle_id: str) -> int:
        """Samples the cloud's store holds for *vehicle_id*."""
        count = self._ask("count", vehicle_id)
        if not isinstance(count, int):
            raise CloudProcessError(f"unexpected answer from the cloud process: {count!r}")
        return count

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):  # the child is gone already
            if self._process.is_alive():
                self._conn.send(("stop", ""))
        self._process.join(_STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(_STOP_TIMEOUT)
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _ask(self, command: str, argument: str | list[str]) -> object:
        if self._stopped:
            raise CloudProcessError("the loopback cloud is stopped")
        try:
            self._conn.send((command, argument))
        except OSError as exc:
            raise CloudProcessError(f"the cloud process is gone: {exc}") from exc
        return self._answer()

    def _answer(self) -> object:
        try:
            if not self._conn.poll(_TIMEOUT):
                raise CloudProcessError(f"the cloud process did not answer in {_TIMEOUT:.0f}s")
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._process.join(_STOP_TIMEOUT)
            raise CloudProcessError(
                f"the cloud process exited (code {self._process.exitcode})"
            ) from exc
        if status != "ok":
            raise CloudProcessError(f"the cloud process failed: {value}")
        return value


# ---------------------------------------------------------------- the child process


def _child(conn: Connection, data_dir: str, secret: str, database_url: str | None) -> None:
    # Before grpc initialises: keep its connection chatter off the benchmark's stderr.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        asyncio.run(_serve(conn, Path(data_dir), secret, database_url))
    except Exception as exc:  # reported to the parent, which raises it
        with contextlib.suppress(OSError):  # the parent is gone
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _serve(conn: Connection, data_dir: Path, secret: str, database_url: str | None) -> None:
    # Imported here: the parent needs none of the server side.
    from cloud.config import CloudSettings, TenantSettings
    from cloud.server import start_gateway
    from cloud.store import TenantRegistry

    settings = CloudSettings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        tenants={TENANT: TenantSettings(token_secret=SecretStr(secret), database_url=database_url)},
    )
    registry = TenantRegistry(settings)
    try:
        store = registry.store(TENANT)
        async with await start_gateway(settings, registry) as gateway:
            conn.send(("ok", gateway.target))
            while True:
                command, argument = await asyncio.to_thread(conn.recv)
                if command == "stop":
                    return
                try:
                    if command == "enroll":
                        await asyncio.to_thread(store.enroll_vehicle, argument)
                        conn.send(("ok", None))
                    elif command == "enroll_many":
                        await asyncio.to_thread(store.enroll_vehicles, argument)
                        conn.send(("ok", None))
                    elif command == "count":
                        conn.send(("ok", await asyncio.to_thread(store.count_samples, argument)))
                    else:
                        conn.send(("error", f"unknown command {command!r}"))
                except Exception as exc:  # one failed request does not stop the gateway
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        registry.close()
