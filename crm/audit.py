"""Audit rows written with group commit: no answer leaves before its audit row is committed.

Each request hands its row to ``AuditWriter.write`` and waits for the commit.
One writer thread takes every row queued meanwhile and inserts them per tenant
in one transaction, so under load a commit carries many requests' rows
instead of one each: the guarantee of a synchronous write (an answer implies
a committed audit row; a failed write fails the request) at a fraction of the
cost. The queue is bounded: when it is full, requests wait for room.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from crm.errors import CrmError, StoreUnavailable
from crm.store import CrmStores

__all__ = ["AuditWriter"]

_log = logging.getLogger(__name__)
_Item = tuple[str, Mapping[str, Any], "concurrent.futures.Future[None]"]
_STOP = object()


class AuditWriter:
    """The writer thread starts with the first row; ``close()`` drains and stops it."""

    def __init__(self, stores: CrmStores, *, max_queue: int = 10_000, max_batch: int = 1_000):
        self._stores = stores
        self._queue: queue.Queue[_Item | object] = queue.Queue(max_queue)
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def write(self, tenant: str, row: Mapping[str, Any]) -> None:
        """Queue ``row`` for ``tenant``'s store and return once it is committed."""
        self._start()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self._queue.put_nowait((tenant, row, done))
        except queue.Full:
            await asyncio.to_thread(self._queue.put, (tenant, row, done))
        await asyncio.wrap_future(done)

    def close(self) -> None:
        """Commit what is queued, then stop the thread; calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the audit writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crm-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Item] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        by_tenant: dict[str, list[_Item]] = defaultdict(list)
        for item in batch:
            by_tenant[item[0]].append(item)
        for tenant, items in by_tenant.items():
            try:
                self._stores.store(tenant).write_audit_rows([row for _, row, _ in items])
            except Exception as exc:  # even a bug must fail the requests, not hang them
                if not isinstance(exc, CrmError):
                    _log.exception("audit rows of tenant %s not written", tenant)
                # Whatever the cause, the request cannot be answered without its row.
                failure = StoreUnavailable(f"audit rows not written: {exc}")
                for _, _, done in items:
                    done.set_exception(failure)
            else:
                for _, _, done in items:
                    done.set_result(None)
