"""The event bus: the gateway's committed data, and the rules' events, to workers.

One interface (``EventBus``), two implementations: ``MemoryBus`` in the
process (the embedded default) and ``NatsBus`` on NATS JetStream when
gateways and workers run as separate processes. ``open_bus`` picks one from
the ``TELEHUB_EVENT_BUS`` setting; nats-py is imported only when asked for.
Subjects are per tenant (``cloud.events.subjects``), the events are small
JSON envelopes (``cloud.events.envelope``), delivery is at least once, and
``Idempotent`` makes a consumer handle each message once.
"""

from __future__ import annotations

from cloud.events.bus import BusCounters, Delivery, EventBus, Handler, Subscription
from cloud.events.envelope import BatchCommitted, Event, FaultChange, FaultsCommitted, RuleEvent
from cloud.events.idempotent import Idempotent
from cloud.events.memory import MemoryBus
from cloud.events.notifier import CommitNotifier

__all__ = [
    "BatchCommitted",
    "BusCounters",
    "CommitNotifier",
    "Delivery",
    "Event",
    "EventBus",
    "FaultChange",
    "FaultsCommitted",
    "Handler",
    "Idempotent",
    "MemoryBus",
    "RuleEvent",
    "Subscription",
    "open_bus",
]


async def open_bus(url: str, *, capacity: int, max_deliver: int) -> EventBus:
    """The bus ``url`` names: ``memory``, or ``nats://host:port`` (raises ``BusUnavailable``)."""
    if url == "memory":
        return MemoryBus(capacity=capacity, max_deliver=max_deliver)
    # Loaded only here: the embedded deployment never imports nats-py.
    from cloud.events.jetstream import NatsBus

    bus = NatsBus(capacity=capacity, max_deliver=max_deliver)
    await bus.connect(url)
    return bus
