"""The in-process event bus: the embedded default, and the fake the contract tests share.

Each durable consumer keeps its unacknowledged messages (queued or being
handled) in its own list, bounded by ``capacity``. A full consumer applies
backpressure: ``publish`` waits up to ``full_timeout`` seconds for the
consumer to catch up, then raises ``BusFull`` (counted in ``rejected_full``)
rather than drop anything, just as a JetStream stream at its limit refuses
new messages. The publisher, the gateway, decides what a refusal costs (see
``cloud.events.notifier``). A message already queued for other consumers stays
queued; the publisher's retry reaches them again under the same message id,
which idempotent consumers drop.

A handler that raises gets the message again after ``retry_delay`` seconds,
in place (later messages wait, so order per consumer holds), up to
``max_deliver`` attempts; then it is dead-lettered. Nothing survives the
process: this bus is for one process, the JetStream bus for several.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from cloud.errors import BusFull, BusUnavailable, InvalidSubject
from cloud.events.bus import Delivery, EventBus, Handler, Subscription
from cloud.events.subjects import check_durable, matches, tenant_of

__all__ = ["MemoryBus"]


@dataclass(slots=True)
class _Pending:
    subject: str
    msg_id: str
    data: bytes
    #: Deliveries so far, including one cut short by a closing subscription.
    attempts: int = 0


class _Consumer:
    """A durable consumer: its filter and its unacknowledged messages, oldest first."""

    def __init__(self, subject_filter: str, capacity: int) -> None:
        self.subject_filter = subject_filter
        self._capacity = capacity
        self._queue: deque[_Pending] = deque()
        #: Queued plus being handled: what ``capacity`` bounds.
        self._unacked = 0
        # Level-triggered flags kept in step with the state by ``_changed``.
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._changed()

    def _changed(self) -> None:
        for flag, state in ((self._readable, bool(self._queue)), (self._room, self._has_room())):
            if state:
                flag.set()
            else:
                flag.clear()

    def _has_room(self) -> bool:
        return self._unacked < self._capacity

    async def offer(self, pending: _Pending, wait: float) -> bool:
        """Queue ``pending``, waiting up to ``wait`` seconds for room; whether it was."""
        try:
            async with asyncio.timeout(wait):
                while not self._has_room():
                    await self._room.wait()
        except TimeoutError:
            return False
        self._queue.append(pending)
        self._unacked += 1
        self._changed()
        return True

    async def take(self) -> _Pending:
        """The oldest queued message; it stays unacknowledged until ``done`` or ``requeue``."""
        while not self._queue:
            await self._readable.wait()
        # No await between the check and the pop: another taker cannot interleave.
        pending = self._queue.popleft()
        self._changed()
        return pending

    def requeue(self, pending: _Pending) -> None:
        """Put a message whose handling was cut short back at the head."""
        self._queue.appendleft(pending)
        self._changed()

    def done(self, _pending: _Pending) -> None:
        """Acknowledge (or give up) a taken message."""
        self._unacked -= 1
        self._changed()


class _MemorySubscription(Subscription):
    def __init__(
        self,
        bus: MemoryBus,
        consumer: _Consumer,
        durable: str,
        handler: Handler,
    ) -> None:
        super().__init__(consumer.subject_filter, durable, bus.counters, bus.drain_seconds)
        self._bus = bus
        self._consumer = consumer
        self._handler = handler

    async def _run(self) -> None:
        while not self.closing():
            pending = await self._consumer.take()
            with self._handling():
                await self._deliver(pending)

    async def _deliver(self, pending: _Pending) -> None:
        try:
            while True:
                pending.attempts += 1
                delivery = Delivery(pending.subject, pending.msg_id, pending.data, pending.attempts)
                if await self._attempt(self._handler, delivery):
                    self._counters.acked += 1
                    break
                if pending.attempts >= self._bus.max_deliver:
                    self._dead_letter(delivery)
                    break
                await asyncio.sleep(self._bus.retry_delay)
        except asyncio.CancelledError:
            # Closed (or the bus shut down) mid-way: not acknowledged, so delivered again.
            self._consumer.requeue(pending)
            raise
        self._consumer.done(pending)

    async def _detach(self) -> None:
        self._bus._detached(self)


class MemoryBus(EventBus):
    """Bounded, durable-for-the-process consumers on one event loop."""

    def __init__(
        self,
        *,
        capacity: int = 10_000,
        max_deliver: int = 5,
        retry_delay: float = 0.5,
        full_timeout: float = 1.0,
        duplicate_window: float = 120.0,
        duplicate_ids: int = 100_000,
        drain_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        if capacity < 1 or max_deliver < 1 or duplicate_ids < 1:
            raise ValueError("capacity, max_deliver and duplicate_ids must be at least 1")
        self.capacity = capacity
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.full_timeout = full_timeout
        self.drain_seconds = drain_seconds
        self._window = duplicate_window
        self._window_ids = duplicate_ids
        #: (tenant, durable) -> consumer
        self._consumers: dict[tuple[str, str], _Consumer] = {}
        #: tenant -> message id -> when it was published (oldest first)
        self._recent: dict[str, OrderedDict[str, float]] = {}
        self._subscriptions: set[_MemorySubscription] = set()
        self._closed = False

    async def publish(self, subject: str, data: bytes, *, msg_id: str) -> None:
        tenant = tenant_of(subject)
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")
        recent = self._recent.setdefault(tenant, OrderedDict())
        now = time.monotonic()
        while recent and (
            len(recent) > self._window_ids or next(iter(recent.values())) < now - self._window
        ):
            recent.popitem(last=False)
        if msg_id in recent:
            self.counters.publish_duplicates += 1
            return
        # Taken before the offers, which may wait: a concurrent publish of the same
        # id is then a duplicate, as JetStream's atomic check would make it.
        recent[msg_id] = now
        refused = 0
        for (owner, _), consumer in list(self._consumers.items()):
            if owner == tenant and matches(consumer.subject_filter, subject):
                pending = _Pending(subject, msg_id, data)
                if not await consumer.offer(pending, self.full_timeout):
                    refused += 1
        if refused:
            recent.pop(msg_id, None)  # so that the publisher's retry goes through
            self.counters.rejected_full += 1
            raise BusFull(
                f"{refused} consumer(s) of {subject} hold {self.capacity} unacknowledged messages"
            )
        self.counters.published += 1

    async def subscribe(self, subject_filter: str, durable: str, handler: Handler) -> Subscription:
        tenant = tenant_of(subject_filter, wildcards=True)
        check_durable(durable)
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")
        consumer = self._consumers.get((tenant, durable))
        if consumer is None:
            consumer = self._consumers[tenant, durable] = _Consumer(subject_filter, self.capacity)
        elif consumer.subject_filter != subject_filter:
            raise InvalidSubject(
                f"consumer {durable!r} of tenant {tenant!r} filters "
                f"{consumer.subject_filter!r}, not {subject_filter!r}"
            )
        subscription = _MemorySubscription(self, consumer, durable, handler)
        self._subscriptions.add(subscription)
        subscription._start()
        return subscription

    def _detached(self, subscription: _MemorySubscription) -> None:
        self._subscriptions.discard(subscription)

    async def close(self) -> None:
        self._closed = True
        subscriptions = list(self._subscriptions)
        await asyncio.gather(*(subscription.close() for subscription in subscriptions))
