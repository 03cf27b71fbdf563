"""What only the in-process bus does: backpressure within full_timeout, its duplicate window."""

from __future__ import annotations

import asyncio

import pytest

from cloud.errors import BusUnavailable
from cloud.events import Delivery, MemoryBus
from cloud.events.subjects import batches
from tests.cloud.events.conftest import Collector


async def test_a_full_consumer_holds_the_publisher_back_until_it_catches_up() -> None:
    bus = MemoryBus(capacity=1, full_timeout=5.0)
    release = asyncio.Event()

    async def blocked(delivery: Delivery) -> None:
        await release.wait()

    collector = Collector(blocked)
    await bus.subscribe(batches("acme"), "slow", collector)
    await bus.publish(batches("acme"), b"1", msg_id="1")
    await collector.wait_for(1)
    waiting = asyncio.create_task(bus.publish(batches("acme"), b"2", msg_id="2"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # backpressure, not a drop and not an error
    release.set()
    await asyncio.wait_for(waiting, 5)
    await collector.wait_for(2)
    assert collector.data == [b"1", b"2"]
    assert bus.counters.rejected_full == 0
    await bus.close()


async def test_an_id_older_than_the_duplicate_window_is_delivered_again() -> None:
    bus = MemoryBus(duplicate_window=0.05)
    collector = Collector()
    await bus.subscribe(batches("acme"), "window", collector)
    await bus.publish(batches("acme"), b"x", msg_id="1")
    await asyncio.sleep(0.1)
    await bus.publish(batches("acme"), b"x", msg_id="1")
    await collector.wait_for(2)
    assert bus.counters.publish_duplicates == 0
    await bus.close()


async def test_the_duplicate_window_remembers_a_bounded_number_of_ids() -> None:
    bus = MemoryBus(duplicate_ids=2)
    collector = Collector()
    await bus.subscribe(batches("acme"), "bounded-ids", collector)
    for msg_id in ("1", "2", "3", "1"):  # "1" was forgotten when "3" came
        await bus.publish(batches("acme"), msg_id.encode(), msg_id=msg_id)
    await collector.wait_for(4)
    await bus.publish(batches("acme"), b"3", msg_id="3")  # still remembered
    assert bus.counters.publish_duplicates == 1
    await bus.close()


async def test_a_closed_bus_refuses_to_publish_and_subscribe() -> None:
    bus = MemoryBus()
    await bus.close()
    with pytest.raises(BusUnavailable):
        await bus.publish(batches("acme"), b"x", msg_id="1")
    with pytest.raises(BusUnavailable):
        await bus.subscribe(batches("acme"), "late", Collector())


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryBus(capacity=0)
