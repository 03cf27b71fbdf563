"""The event bus on NATS JetStream: for gateways and workers in separate processes.

Each tenant gets its own stream (``subjects.stream_name``) over its subjects,
created idempotently on first use. Streams use interest retention: a message
stays until every consumer that existed when it was published acknowledged
it, so nothing piles up for no one, and a consumer created later starts with
the messages after it (``DeliverPolicy.NEW``), as on the in-process bus. A
stream is bounded by ``capacity`` messages with the discard-new policy, so a
publish to a full stream fails (``BusFull``) instead of evicting unread
messages. Every publish carries ``Nats-Msg-Id``: a repeat within the
stream's ``duplicate_window`` is acknowledged by the server and not stored.

Consumers are durable pull consumers with explicit acks: a message is acked
after its handler returned, naked with ``retry_delay`` when it raised, and
terminated (dead-lettered) at its ``max_deliver``-th failed attempt. One a
dead process never acked comes back after ``ack_wait``, so a handler should
finish well within it (or its message is delivered a second time meanwhile,
which the idempotent consumer then drops). A message whose deliveries all
timed out that way is given up by the server without a handler failing, so
it is not in ``dead_lettered``: JetStream's max-deliveries advisory reports it. The connection
reconnects for ever once established; fetches failing meanwhile are counted
and retried with a bounded backoff. nats-py errors are translated into the
``EventBusError`` tree here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from cloud.errors import BusFull, BusUnavailable, EventBusError, InvalidSubject
from cloud.events.bus import Delivery, EventBus, Handler, Subscription
from cloud.events.subjects import check_durable, stream_name, tenant_of, tenant_subjects

__all__ = ["NatsBus"]

logger = logging.getLogger(__name__)

#: JetStream's "maximum messages exceeded" and "maximum bytes exceeded" with discard-new.
_STREAM_FULL_CODES = frozenset({10077, 10047})
_MSG_ID = "Nats-Msg-Id"
_MAX_FETCH_BACKOFF = 5.0


class _NatsSubscription(Subscription):
    # Cancelling a waiting fetch could leave its pull request answered into a
    # closed inbox: that message would wait out ack_wait. Let the fetch expire.
    _cancel_when_idle = False

    def __init__(
        self,
        bus: NatsBus,
        pull: JetStreamContext.PullSubscription,
        subject_filter: str,
        durable: str,
        handler: Handler,
    ) -> None:
        super().__init__(subject_filter, durable, bus.counters, bus.drain_seconds)
        self._bus = bus
        self._pull = pull
        self._handler = handler

    async def _run(self) -> None:
        backoff = 0.1
        while not self.closing():
            try:
                messages = await self._pull.fetch(self._bus.fetch_batch, self._bus.fetch_wait)
            except TimeoutError:
                # The long poll expired with nothing to take: ask again. (nats-py
                # raises its own TimeoutError or asyncio's, depending on the path.)
                continue
            except Exception as exc:
                # Disconnected, reconnecting, consumer deleted, or a client bug: the
                # client reconnects by itself; this loop must outlive all of it, so
                # it asks again after a pause rather than dying or spinning.
                self._counters.errors += 1
                logger.warning("consumer %s: fetch failed: %r", self.durable, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_FETCH_BACKOFF)
                continue
            backoff = 0.1
            with self._handling():
                for index, message in enumerate(messages):
                    if self.closing():
                        await _release(messages[index:])
                        break
                    try:
                        await self._deliver(message)
                    except asyncio.CancelledError:
                        await _release(messages[index + 1 :])
                        raise

    async def _deliver(self, message: Msg) -> None:
        attempt = message.metadata.num_delivered
        msg_id = (message.headers or {}).get(_MSG_ID, "")
        delivery = Delivery(message.subject, msg_id, message.data, attempt)
        try:
            succeeded = await self._attempt(self._handler, delivery)
        except asyncio.CancelledError:
            await _release([message])
            raise
        try:
            if succeeded:
                await message.ack()
                self._counters.acked += 1
            elif attempt >= self._bus.max_deliver:
                self._dead_letter(delivery)
                await message.term()
            else:
                await message.nak(delay=self._bus.retry_delay)
        except nats.errors.Error as exc:
            # The server did not hear of it: the message comes back after ack_wait,
            # and the idempotent handler drops it then.
            self._counters.errors += 1
            logger.warning("consumer %s: cannot settle %s: %s", self.durable, msg_id, exc)

    async def _detach(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._pull.unsubscribe()
        self._bus._detached(self)


async def _release(messages: list[Msg]) -> None:
    """Hand fetched, unhandled messages back at once (rather than after ack_wait)."""
    for message in messages:
        with contextlib.suppress(nats.errors.Error):
            await message.nak()


class NatsBus(EventBus):
    """Per-tenant JetStream streams with durable pull consumers; ``connect`` before use."""

    def __init__(
        self,
        *,
        capacity: int = 1_000_000,
        max_deliver: int = 5,
        retry_delay: float = 0.5,
        ack_wait: float = 30.0,
        duplicate_window: float = 120.0,
        publish_timeout: float = 2.0,
        fetch_batch: int = 64,
        fetch_wait: float = 1.0,
        drain_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        if capacity < 1 or max_deliver < 1 or fetch_batch < 1:
            raise ValueError("capacity, max_deliver and fetch_batch must be at least 1")
        self.capacity = capacity
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.ack_wait = ack_wait
        self.duplicate_window = duplicate_window
        self.publish_timeout = publish_timeout
        self.fetch_batch = fetch_batch
        self.fetch_wait = fetch_wait
        self.drain_seconds = drain_seconds
        self._nc = Client()
        self._js: JetStreamContext | None = None
        self._streams: set[str] = set()
        self._subscriptions: set[_NatsSubscription] = set()
        self._closed = False

    async def connect(self, url: str, *, name: str = "telehub", attempts: int = 3) -> None:
        """Connect to ``url`` (``nats://host:port``); ``BusUnavailable`` if it cannot."""
        try:
            await self._nc.connect(
                servers=[url],
                name=name,
                # Bounded for the first connection, so a wrong URL fails the start.
                max_reconnect_attempts=attempts,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds, float works
                connect_timeout=2,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"cannot connect to NATS at {url}: {exc}") from exc
        # Once up, a gateway outlives any NATS restart: reconnect for ever. The
        # client reads this option at each reconnection, not only at connect.
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=self.publish_timeout)

    async def _on_error(self, exc: Exception) -> None:
        self.counters.errors += 1
        logger.warning("NATS: %s", exc or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            logger.warning("lost the connection to NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        self.counters.reconnects += 1
        logger.info("reconnected to NATS at %s", self._nc.connected_url)

    @property
    def _jetstream(self) -> JetStreamContext:
        if self._js is None or self._closed:
            raise BusUnavailable("the NATS bus is not connected")
        return self._js

    async def _stream(self, tenant: str) -> str:
        """The tenant's stream, created if missing (by whichever process comes first)."""
        name = stream_name(tenant)
        if name in self._streams:
            return name
        js = self._jetstream
        config = api.StreamConfig(
            name=name,
            subjects=[tenant_subjects(tenant)],
            retention=api.RetentionPolicy.INTEREST,
            discard=api.DiscardPolicy.NEW,
            max_msgs=self.capacity,
            storage=api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
        )
        try:
            try:
                await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # in use with another configuration: use it as it is
                raise EventBusError(f"cannot create stream {name}: {exc.description}") from exc
        except nats.errors.Error as exc:
            raise BusUnavailable(f"cannot look up or create stream {name}: {exc}") from exc
        self._streams.add(name)
        return name

    async def publish(self, subject: str, data: bytes, *, msg_id: str) -> None:
        tenant = tenant_of(subject)
        stream = await self._stream(tenant)
        try:
            ack = await self._jetstream.publish(
                subject,
                data,
                timeout=self.publish_timeout,
                stream=stream,
                headers={_MSG_ID: msg_id},
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in _STREAM_FULL_CODES:
                self.counters.rejected_full += 1
                raise BusFull(f"stream {stream} is full: {exc.description}") from exc
            raise EventBusError(f"publish to {subject} refused: {exc.description}") from exc
        except nats.errors.Error as exc:
            raise BusUnavailable(f"publish to {subject} failed: {exc!r}") from exc
        if ack.duplicate:
            self.counters.publish_duplicates += 1
        else:
            self.counters.published += 1

    async def subscribe(self, subject_filter: str, durable: str, handler: Handler) -> Subscription:
        tenant = tenant_of(subject_filter, wildcards=True)
        check_durable(durable)
        stream = await self._stream(tenant)
        js = self._jetstream
        try:
            try:
                info = await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(
                    stream,
                    api.ConsumerConfig(
                        durable_name=durable,
                        filter_subject=subject_filter,
                        ack_policy=api.AckPolicy.EXPLICIT,
                        deliver_policy=api.DeliverPolicy.NEW,
                        ack_wait=self.ack_wait,
                        max_deliver=self.max_deliver,
                    ),
                )
            else:
                if info.config.filter_subject != subject_filter:
                    raise InvalidSubject(
                        f"consumer {durable!r} of tenant {tenant!r} filters "
                        f"{info.config.filter_subject!r}, not {subject_filter!r}"
                    )
            pull = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except nats.js.errors.APIError as exc:
            raise EventBusError(f"cannot create consumer {durable}: {exc.description}") from exc
        except nats.errors.Error as exc:
            raise BusUnavailable(f"cannot subscribe {durable} to {subject_filter}: {exc}") from exc
        subscription = _NatsSubscription(self, pull, subject_filter, durable, handler)
        self._subscriptions.add(subscription)
        subscription._start()
        return subscription

    def _detached(self, subscription: _NatsSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def remove_tenant(self, tenant: str) -> None:
        """Delete the tenant's stream with its messages and consumers (erasing a tenant)."""
        name = stream_name(tenant)
        self._streams.discard(name)
        try:
            await self._jetstream.delete_stream(name)
        except nats.js.errors.NotFoundError:
            return
        except nats.errors.Error as exc:
            raise BusUnavailable(f"cannot delete stream {name}: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        subscriptions = list(self._subscriptions)
        await asyncio.gather(*(subscription.close() for subscription in subscriptions))
        self._closed = True
        # Drain flushes the acks and naks just sent before the connection closes.
        with contextlib.suppress(nats.errors.Error):
            await self._nc.drain()

    async def abandon(self) -> None:
        """Drop the connection without acking or naking anything, as a killed process would.

        For tests and for emergencies: whatever was being handled comes back to
        another consumer after ``ack_wait``.
        """
        self._closed = True
        # Closed first, so the naks of the handlers cancelled below go nowhere.
        with contextlib.suppress(nats.errors.Error):
            await self._nc.close()
        for subscription in list(self._subscriptions):
            await subscription._abandon()
            self._detached(subscription)
