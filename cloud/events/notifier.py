"""Telling the bus what the gateway committed, without ever failing the commit.

The gateway calls ``notify`` after a batch or fault report is committed and
before it acknowledges it to the car. A publish that fails is retried
``attempts`` times with a doubling pause (at most ``max_backoff``); if it
still fails the notification is counted in ``failed``, logged, and the
batch is acknowledged all the same: the data is safe in the store, only
the workers' view of it lags (they can catch up from the store).

Publishing before the ack closes the gap of a gateway killed between commit
and publish: the car never got its ack, resends the batch, the gateway finds
it a duplicate and publishes again under the same message id, and the bus's
duplicate window or the idempotent consumers drop any repeat. The cost: a
bus outage delays each ack by the retries (bounded by ``attempts``, the
backoff and the bus's own publish timeout), and a full bus slows the cars
down, which is the backpressure we want rather than silent loss.
"""

from __future__ import annotations

import asyncio
import logging

from cloud.errors import EventBusError, InvalidSubject
from cloud.events.bus import EventBus
from cloud.events.envelope import Event, encode

__all__ = ["CommitNotifier"]

logger = logging.getLogger(__name__)


class CommitNotifier:
    """Publishes committed batches and reports; counts what it could not publish."""

    def __init__(
        self,
        bus: EventBus,
        *,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.bus = bus
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        #: Notifications the bus took.
        self.published = 0
        #: Notifications given up after every attempt failed.
        self.failed = 0

    async def notify(self, event: Event) -> bool:
        """Publish ``event``; whether the bus took it. Never raises a bus error."""
        data = encode(event)
        pause = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                await self.bus.publish(event.subject, data, msg_id=event.msg_id)
            except InvalidSubject as exc:
                # A tenant or id the bus cannot carry: retrying cannot help.
                error: EventBusError = exc
                break
            except EventBusError as exc:
                error = exc
                if attempt < self._attempts:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self._max_backoff)
            else:
                self.published += 1
                return True
        self.failed += 1
        logger.error(
            "could not publish %s %s after %d attempt(s); it is stored and acknowledged: %s",
            event.kind,
            event.msg_id,
            attempt,
            error,
        )
        return False
