"""Delivery of webhooks to dealer systems (aiohttp): signed, retried, dead-lettered.

Each delivery is a POST of the JSON payload with

* ``X-Telehub-Event``: the event type (``lead.opened``, ``appointment.booked``, ...),
* ``X-Telehub-Delivery``: the delivery's id (receivers deduplicate by it: a
  delivery whose answer was lost is sent again),
* ``X-Telehub-Timestamp``: Unix seconds when it was signed,
* ``X-Telehub-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the
  webhook's secret, of ``<timestamp>.<body>`` (the timestamp lets a receiver
  refuse replays of an old capture).

A 2xx answer delivers it. Anything else (another status, a connection error,
a timeout) is retried after ``backoff * 2**(attempt-1)`` seconds, capped; after
the last attempt the delivery becomes a dead letter, kept with its last
error until an operator replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from crm.config import CrmSettings
from crm.domain import backoff_seconds
from crm.errors import CrmError
from crm.store import CrmStores
from crm.store.base import now_us

__all__ = ["DeliveryCounts", "WebhookSender", "sign"]

_log = logging.getLogger(__name__)
#: Deliveries sent per pass and tenant: a backlog drains in bounded steps.
_PASS_LIMIT = 100


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Telehub-Signature`` value of ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


@dataclass
class DeliveryCounts:
    delivered: int = 0
    retried: int = 0
    dead: int = 0

    def add(self, other: DeliveryCounts) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead


class WebhookSender:
    """Sends due deliveries of every tenant; one ``aiohttp`` session, closed by ``close()``."""

    def __init__(self, stores: CrmStores, settings: CrmSettings) -> None:
        self._stores = stores
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next due time."""
        self._wake.set()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def deliver_due(self, tenant: str) -> DeliveryCounts:
        """One attempt at every delivery of ``tenant`` that is due now."""
        store = self._stores.store(tenant)
        counts = DeliveryCounts()
        for delivery in await asyncio.to_thread(store.due_deliveries, _PASS_LIMIT):
            error = await self._post(delivery)
            attempts = int(delivery["attempts"]) + 1
            retry_at: int | None = None
            if error is None:
                counts.delivered += 1
            elif attempts < self._settings.webhook_attempts:
                delay = backoff_seconds(
                    attempts,
                    self._settings.webhook_backoff_seconds,
                    self._settings.webhook_backoff_cap_seconds,
                )
                retry_at = now_us() + int(delay * 1e6)
                counts.retried += 1
            else:
                counts.dead += 1
            await asyncio.to_thread(
                store.record_attempt,
                int(delivery["id"]),
                attempts=attempts,
                error=error,
                retry_at_us=retry_at,
            )
        return counts

    async def drain(self, tenant: str, *, within: float) -> DeliveryCounts:
        """Deliver until nothing of ``tenant`` is pending (or ``within`` seconds passed)."""
        deadline = time.monotonic() + within
        counts = DeliveryCounts()
        store = self._stores.store(tenant)
        while True:
            counts.add(await self.deliver_due(tenant))
            due = await asyncio.to_thread(store.next_due_us)
            left = deadline - time.monotonic()
            if due is None or left <= 0:
                return counts
            await asyncio.sleep(min(left, max(0.0, (due - now_us()) / 1e6)))

    async def run(self, *, idle_seconds: float = 30.0) -> None:
        """Deliver for every tenant until cancelled; sleeps until the next due time or a wake.

        A failing tenant store is logged and retried at the next pass; cancellation
        goes through.
        """
        while True:
            self._wake.clear()
            sleep = idle_seconds
            for tenant in self._stores.tenants:
                try:
                    await self.deliver_due(tenant)
                    due = await asyncio.to_thread(self._stores.store(tenant).next_due_us)
                except CrmError:
                    _log.exception("webhook deliveries of tenant %s failed", tenant)
                    continue
                if due is not None:
                    sleep = min(sleep, max(0.0, (due - now_us()) / 1e6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)

    async def _post(self, delivery: Mapping[str, Any]) -> str | None:
        """Send one delivery; ``None`` when the receiver took it, else why not."""
        body = json.dumps(delivery["payload"], separators=(",", ":"), sort_keys=True).encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Telehub-Event": str(delivery["event_type"]),
            "X-Telehub-Delivery": str(delivery["id"]),
            "X-Telehub-Timestamp": str(stamp),
            "X-Telehub-Signature": sign(str(delivery["secret"]), stamp, body),
        }
        try:
            async with self._client().post(
                str(delivery["url"]), data=body, headers=headers
            ) as reply:
                if 200 <= reply.status < 300:
                    return None
                return f"HTTP {reply.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
