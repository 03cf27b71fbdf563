"""Both event buses behind one fixture, so the contract suite runs against each.

``buses`` opens buses of one kind with options fit for tests (short retry
pauses, short drains) and closes them afterwards; on NATS each test has a
tenant of its own, whose stream is deleted at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from cloud.events import Delivery, EventBus, MemoryBus
from cloud.events.jetstream import NatsBus


@dataclass
class Buses:
    """Opens buses of one kind; ``reopen`` is another process's view of the same bus."""

    kind: str
    nats_url: str | None
    opened: list[EventBus] = field(default_factory=list)

    async def open(self, *, capacity: int = 1_000, max_deliver: int = 3) -> EventBus:
        bus: EventBus
        if self.kind == "memory":
            bus = MemoryBus(
                capacity=capacity,
                max_deliver=max_deliver,
                retry_delay=0.02,
                full_timeout=0.1,
                drain_seconds=1.0,
            )
        else:
            assert self.nats_url is not None
            bus = NatsBus(
                capacity=capacity,
                max_deliver=max_deliver,
                retry_delay=0.02,
                ack_wait=1.0,
                fetch_wait=0.2,
                drain_seconds=1.0,
            )
            await bus.connect(self.nats_url, name="telehub-tests")
        self.opened.append(bus)
        return bus

    async def reopen(self, bus: EventBus) -> EventBus:
        """The same durable state seen again: the same object in memory, a new connection
        on NATS (as a restarted worker process would have)."""
        if isinstance(bus, MemoryBus):
            return bus
        assert isinstance(bus, NatsBus)
        return await self.open(capacity=bus.capacity, max_deliver=bus.max_deliver)


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def buses(request: pytest.FixtureRequest, tenant: str) -> AsyncIterator[Buses]:
    url: str | None = request.getfixturevalue("nats_url") if request.param == "nats" else None
    buses = Buses(request.param, url)
    yield buses
    for bus in buses.opened:
        await bus.close()
    if url is not None:
        cleaner = NatsBus()
        await cleaner.connect(url)
        await cleaner.remove_tenant(tenant)
        await cleaner.close()


class Collector:
    """A handler that records deliveries and lets a test wait for a number of them."""

    def __init__(self, behaviour: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.seen: list[Delivery] = []
        self._behaviour = behaviour
        self._changed = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.seen.append(delivery)
        self._changed.set()
        if self._behaviour is not None:
            await self._behaviour(delivery)

    @property
    def data(self) -> list[bytes]:
        return [delivery.data for delivery in self.seen]

    async def wait_for(self, count: int, within: float = 10.0) -> list[Delivery]:
        async with asyncio.timeout(within):
            while len(self.seen) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.seen


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition`` holds (for counters a worker updates after a handler)."""
    async with asyncio.timeout(within):
        # The counters have no event to wait on; a test may look every 10 ms.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
