"""The event bus interface: publish bytes to a subject, consume them with durable consumers.

Delivery is at least once. A subscription hands each message to its handler
one at a time and acknowledges it only after the handler returned; a handler
that raises gets the message again (``Delivery.attempt`` counts up) until
``max_deliver`` attempts failed, after which the message is dead-lettered:
counted in ``BusCounters.dead_lettered``, logged, and given up. A consumer is
durable: it is named, the bus keeps its unacknowledged messages while no
subscription is attached (or its process died), and the next subscription
under the same name resumes from there. Several subscriptions under one name
share the work. Handlers must therefore be idempotent (see
``cloud.events.idempotent``).

A consumer sees the messages published after it was first created. Each
bus bounds the unacknowledged messages it holds and raises ``BusFull`` on a
publish past that bound instead of dropping anything. ``publish`` with a
message id already published within the bus's duplicate window is accepted
and not delivered again (``publish_duplicates``), so a publisher may retry.

Messages on one subject reach a consumer in publish order while its handlers
succeed; a redelivered message may come after later ones on JetStream.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

__all__ = ["BusCounters", "Delivery", "EventBus", "Handler", "Subscription"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a handler; ``attempt`` is 1 on its first delivery."""

    subject: str
    msg_id: str
    data: bytes
    attempt: int


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(slots=True)
class BusCounters:
    """What a bus did since it was opened; every message it did not deliver is counted here."""

    published: int = 0
    #: Publishes of a message id still in the duplicate window: accepted, not delivered again.
    publish_duplicates: int = 0
    #: Publishes refused with ``BusFull``.
    rejected_full: int = 0
    delivered: int = 0
    acked: int = 0
    #: Handler calls that raised; the message is delivered again (or dead-lettered).
    failed: int = 0
    #: Messages given up after ``max_deliver`` failed attempts.
    dead_lettered: int = 0
    #: Times the connection to the bus came back after it was lost (JetStream only).
    reconnects: int = 0
    #: Consumer-side errors of the bus itself (a fetch or an ack that failed), retried.
    errors: int = 0


class Subscription(ABC):
    """A consumer attached to the bus; ``close`` detaches it and keeps its durable state."""

    def __init__(
        self, subject_filter: str, durable: str, counters: BusCounters, drain_seconds: float
    ) -> None:
        self.subject_filter = subject_filter
        self.durable = durable
        self._counters = counters
        self._drain_seconds = drain_seconds
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._closing = False
        self._close_lock = asyncio.Lock()

    #: Whether an idle worker (waiting for a message) may be cancelled at once on
    #: close. A JetStream fetch may not: a pull request cancelled while waiting
    #: could still be answered with a message no one then handles.
    _cancel_when_idle = True

    def _start(self) -> None:
        self._task = asyncio.create_task(
            self._run(), name=f"consumer {self.durable} on {self.subject_filter}"
        )

    def closing(self) -> bool:
        """Whether ``close`` was called: the worker takes no further message.

        A method, not a property: loops re-read it after every await.
        """
        return self._closing

    def running(self) -> bool:
        """Whether the worker task is still alive."""
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Stop taking messages; let the one being handled finish (within the drain time).

        A handler still running after ``drain_seconds`` is cancelled and its
        message stays unacknowledged, so the consumer gets it again. Safe to
        call twice.
        """
        async with self._close_lock:
            task = self._task
            if task is None or task.done():
                self._retrieve(task)
                return
            self._closing = True
            if self._cancel_when_idle and not self._busy:
                task.cancel()
            await asyncio.wait({task}, timeout=self._drain_seconds)
            if not task.done():
                logger.warning(
                    "consumer %s: handler still busy after %.1f s; cancelled, it is redelivered",
                    self.durable,
                    self._drain_seconds,
                )
                task.cancel()
                await asyncio.wait({task})
            self._retrieve(task)
            await self._detach()

    async def _abandon(self) -> None:
        """Stop the worker at once, without waiting for its handler."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    def _retrieve(self, task: asyncio.Task[None] | None) -> None:
        if task is None or task.cancelled() or task.exception() is None:
            return
        # The loops log and count what they expect; anything else is a bug worth a trace.
        logger.error("consumer %s failed", self.durable, exc_info=task.exception())

    @contextmanager
    def _handling(self) -> Iterator[None]:
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    async def _attempt(self, handler: Handler, delivery: Delivery) -> bool:
        """Run the handler once; whether it succeeded. Cancellation goes through."""
        self._counters.delivered += 1
        try:
            await handler(delivery)
        except Exception:
            self._counters.failed += 1
            logger.warning(
                "consumer %s: handler failed on %s (attempt %d)",
                self.durable,
                delivery.msg_id,
                delivery.attempt,
                exc_info=True,
            )
            return False
        return True

    def _dead_letter(self, delivery: Delivery) -> None:
        self._counters.dead_lettered += 1
        logger.error(
            "consumer %s: gave %s on %s up after %d failed attempts (dead-lettered)",
            self.durable,
            delivery.msg_id,
            delivery.subject,
            delivery.attempt,
        )

    @abstractmethod
    async def _run(self) -> None:
        """Take messages until ``closing()``; never raises for a handler's failure."""

    @abstractmethod
    async def _detach(self) -> None:
        """Release what the subscription holds on the bus, after the worker ended."""


class EventBus(ABC):
    """Publish to per-tenant subjects (``cloud.events.subjects``); consume durably."""

    def __init__(self) -> None:
        self.counters = BusCounters()

    @abstractmethod
    async def publish(self, subject: str, data: bytes, *, msg_id: str) -> None:
        """Store ``data`` on ``subject`` for every consumer whose filter matches.

        Returns once the bus holds the message. Raises ``BusFull`` or
        ``InvalidSubject`` when nothing was published, ``BusUnavailable`` when
        the bus did not confirm in time (the message may still arrive: a client
        buffers it while it reconnects). Retrying with the same ``msg_id`` is
        safe either way.
        """

    @abstractmethod
    async def subscribe(self, subject_filter: str, durable: str, handler: Handler) -> Subscription:
        """Attach ``handler`` to the durable consumer ``durable`` of one tenant's subjects.

        ``subject_filter`` may use ``*`` and a final ``>`` after the tenant,
        e.g. ``telehub.acme.events.>``. The consumer is created on first use.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close every subscription (letting handlers finish), then the bus; idempotent."""

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
