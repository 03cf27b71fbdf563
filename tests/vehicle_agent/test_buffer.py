from __future__ import annotations

import asyncio

import pytest

from vehicle_agent.batching import Batch
from vehicle_agent.buffer import BatchBuffer, OverflowPolicy


def make(n: int, seq: int = 0) -> Batch:
    b = Batch(catalog_id=1, sequence=seq)
    for i in range(n):
        b.append(i, i, float(i))
    return b


async def test_next_after_returns_batches_in_order_and_waits_for_new_ones() -> None:
    buf = BatchBuffer(4)
    await buf.put(make(1))
    await buf.put(make(2))
    k1, b1 = await buf.next_after(0)
    k2, b2 = await buf.next_after(k1)
    assert (len(b1), len(b2)) == (1, 2)
    waiting = asyncio.create_task(buf.next_after(k2))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await buf.put(make(3))
    _, b3 = await asyncio.wait_for(waiting, 1)
    assert len(b3) == 3


async def test_ack_removes_and_counts() -> None:
    buf = BatchBuffer(4)
    await buf.put(make(2, seq=1))
    await buf.put(make(3, seq=2))
    assert await buf.ack(2) is not None
    assert await buf.ack(2) is None  # a second ack for the same batch changes nothing
    assert len(buf) == 1
    assert buf.stats.acked_samples == 3


async def test_ack_through_removes_only_numbered_batches_at_or_below() -> None:
    buf = BatchBuffer(8)
    for seq in (1, 2, 3, 0):
        await buf.put(make(1, seq=seq))
    assert await buf.ack_through(2) == 2
    assert sorted(b.sequence for _, b in [await buf.next_after(0)]) == [3]
    assert len(buf) == 2


async def test_block_policy_waits_for_room() -> None:
    buf = BatchBuffer(1, OverflowPolicy.BLOCK)
    await buf.put(make(1, seq=1))
    blocked = asyncio.create_task(buf.put(make(1, seq=2)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await buf.ack(1)
    await asyncio.wait_for(blocked, 1)
    assert buf.stats.dropped_batches == 0
    assert len(buf) == 1


async def test_drop_oldest_policy_counts_what_it_drops() -> None:
    buf = BatchBuffer(2, OverflowPolicy.DROP_OLDEST)
    for n in (5, 6, 7):
        await buf.put(make(n))
    assert len(buf) == 2
    assert buf.stats.dropped_batches == 1
    assert buf.stats.dropped_samples == 5
    assert buf.samples == 13


async def test_reject_counts_separately_and_wait_empty_returns() -> None:
    buf = BatchBuffer(2)
    await buf.put(make(4, seq=9))
    empty = asyncio.create_task(buf.wait_empty())
    await asyncio.sleep(0.01)
    assert not empty.done()
    await buf.reject(9)
    await asyncio.wait_for(empty, 1)
    assert (buf.stats.rejected_batches, buf.stats.rejected_samples) == (1, 4)
    assert buf.stats.acked_batches == 0


def test_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchBuffer(0)
