"""What only the in-memory BatchBuffer does; the shared contract is in test_pending_contract."""

from __future__ import annotations

import asyncio

import pytest

from vehicle_agent.batching import Batch
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.pending import OverflowPolicy


def make(n: int) -> Batch:
    b = Batch(catalog_id=1)
    for i in range(n):
        b.append(i, i, float(i))
    return b


async def test_bound_counts_batches_not_samples() -> None:
    buf = BatchBuffer(2, OverflowPolicy.EVICT)
    await buf.put(make(1_000))
    await buf.put(make(1))
    assert buf.stats.evicted_batches == 0
    await buf.put(make(1))  # a third batch, however small, evicts the oldest
    assert (len(buf), buf.stats.evicted_samples) == (2, 1_000)


async def test_blocks_by_default() -> None:
    buf = BatchBuffer(1)
    assert buf.policy is OverflowPolicy.BLOCK
    await buf.put(make(1))
    blocked = asyncio.create_task(buf.put(make(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert len(buf) == 1


async def test_size_is_the_column_bytes() -> None:
    buf = BatchBuffer()
    await buf.put(make(10))
    assert buf.size_bytes == 10 * (4 + 8 + 8)


async def test_hands_out_the_batch_it_was_given() -> None:
    buf = BatchBuffer()
    batch = make(3)
    await buf.put(batch)
    assert await buf.next_after(0) is batch


async def test_keeps_nothing_between_instances() -> None:
    first = BatchBuffer()
    await first.put(make(1))
    first.save_state("plan", b"v1")
    second = BatchBuffer()
    assert (len(second), second.load_state("plan"), second.resume_position()) == (0, None, -1)
    assert await second.put(make(1)) == 1  # provisional numbering starts afresh


def test_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchBuffer(0)
