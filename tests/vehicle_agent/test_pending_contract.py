"""The pending-queue contract, run against the in-memory BatchBuffer and the SQLite Outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vehicle_agent.batching import Batch, EvictedCount, TriggerMark
from vehicle_agent.buffer import SAMPLE_BYTES, BatchBuffer, QueueCore
from vehicle_agent.outbox import ROW_OVERHEAD, Outbox
from vehicle_agent.pending import OverflowPolicy, PendingQueue

SAMPLES = 10  # every batch these tests bound the queue with has this many samples

Factory = Callable[..., QueueCore]


def make(n: int = SAMPLES, *, priority: int = 0, position: int = -1, signal: int = 0) -> Batch:
    b = Batch(catalog_id=7, priority=priority, position=position)
    for i in range(n):
        b.append(signal + i % 3, 1_000 + i, i / 2)
    return b


@pytest.fixture(params=["buffer", "outbox"])
def new_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Make a queue with room for *capacity* batches of SAMPLES samples."""
    opened: list[QueueCore] = []

    def factory(capacity: int = 64, policy: OverflowPolicy = OverflowPolicy.EVICT) -> QueueCore:
        queue: QueueCore
        if request.param == "buffer":
            queue = BatchBuffer(capacity, policy)
        else:
            per_batch = SAMPLES * SAMPLE_BYTES + ROW_OVERHEAD
            path = tmp_path / f"outbox{len(opened)}.db"
            queue = Outbox(path, max_bytes=capacity * per_batch, policy=policy)
        opened.append(queue)
        return queue

    yield factory
    for queue in opened:
        queue.close()


def test_both_keep_the_protocol(new_queue: Factory) -> None:
    queue: PendingQueue = new_queue()
    assert len(queue) == 0


async def test_put_numbers_batches_and_next_after_hands_them_out_in_order(
    new_queue: Factory,
) -> None:
    q = new_queue()
    first, second = make(1), make(2)
    assert await q.put(first) == 1
    assert await q.put(second) == 2
    assert (first.sequence, second.sequence) == (1, 2)
    b1 = await q.next_after(0)
    b2 = await q.next_after(b1.sequence)
    assert (b1.sequence, len(b1), b2.sequence, len(b2)) == (1, 1, 2, 2)
    waiting = asyncio.create_task(q.next_after(2))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await q.put(make(3))
    assert (await asyncio.wait_for(waiting, 1)).sequence == 3
    assert (len(q), q.samples) == (3, 6)
    assert q.size_bytes > 0


async def test_batches_come_back_with_every_field(new_queue: Factory) -> None:
    q = new_queue()
    batch = make(5, priority=3, position=42)
    batch.triggers = [TriggerMark("overspeed", 1_500, 4)]
    await q.put(batch)
    await q.on_welcome(0)
    got = await q.next_after(0)
    assert got.catalog_id == 7
    assert (got.priority, got.position, got.triggers) == (3, 42, batch.triggers)
    assert list(got.signal_index) == list(batch.signal_index)
    assert list(got.timestamp_us) == list(batch.timestamp_us)
    assert list(got.value) == list(batch.value)


async def test_ack_reject_and_ack_through_remove_and_count(new_queue: Factory) -> None:
    q = new_queue()
    for n in (2, 3, 4, 5):
        await q.put(make(n))
    acked = await q.ack(2)
    assert acked is not None
    assert len(acked) == 3
    assert await q.ack(2) is None  # a second ack changes nothing
    rejected = await q.reject(4)
    assert rejected is not None
    assert await q.ack_through(1) == 1
    assert len(q) == 1
    assert (q.stats.acked_batches, q.stats.acked_samples) == (2, 5)
    assert (q.stats.rejected_batches, q.stats.rejected_samples) == (1, 5)
    assert (await q.next_after(0)).sequence == 3


async def test_first_welcome_shifts_provisional_numbers_once(new_queue: Factory) -> None:
    q = new_queue()
    a, b = make(), make()
    await q.put(a)
    await q.put(b)
    await q.on_welcome(100)  # the cloud already holds 1..100 from before a wipe
    assert (a.sequence, b.sequence) == (101, 102)
    assert (await q.next_after(0)).sequence == 101
    assert await q.put(make()) == 103
    await q.on_welcome(101)  # numbering is final now: this only acknowledges
    assert len(q) == 2
    assert (await q.next_after(0)).sequence == 102
    assert q.stats.acked_batches == 1


async def test_welcome_forgets_the_window_so_it_can_be_evicted(new_queue: Factory) -> None:
    q = new_queue(capacity=2)
    await q.put(make(priority=0))
    await q.put(make(priority=0))
    await q.next_after(0)  # batch 1 in flight: not evictable
    await q.put(make(priority=0))
    assert [s for s in (1, 2, 3) if await _pending(q, s)] == [1, 3]
    await q.on_welcome(0)
    await q.put(make(priority=0))
    assert [s for s in (1, 3, 4) if await _pending(q, s)] == [3, 4]


async def _pending(q: QueueCore, sequence: int) -> bool:
    return sequence in q._entries


async def test_eviction_takes_lowest_priority_then_oldest(new_queue: Factory) -> None:
    q = new_queue(capacity=3)
    await q.put(make(priority=5))  # 1
    await q.put(make(priority=1))  # 2
    await q.put(make(priority=1))  # 3
    await q.put(make(priority=2))  # 4 evicts 2 (lowest, oldest)
    await q.put(make(priority=2))  # 5 evicts 3
    await q.put(make(priority=2))  # 6 evicts 4 (same priority, older)
    assert list(q._entries) == [1, 5, 6]
    assert (q.stats.evicted_batches, q.stats.evicted_samples) == (3, 3 * SAMPLES)
    assert len(q) == 3


async def test_new_batch_below_everything_pending_is_evicted_on_arrival(
    new_queue: Factory,
) -> None:
    q = new_queue(capacity=2)
    await q.put(make(priority=5))
    await q.put(make(priority=5))
    low = make(priority=1, position=9)
    assert await q.put(low) == 0
    assert low.sequence == 0
    assert list(q._entries) == [1, 2]
    assert q.resume_position() == 9  # its samples are accounted for: no replay
    assert (q.stats.evicted_batches, q.stats.put_batches) == (1, 3)
    sealed = await q.seal_evictions(7)
    assert sealed is not None
    assert sealed.sequence == 3
    assert len(sealed) == 0
    assert sum(c.samples for c in sealed.evicted) == SAMPLES
    assert await q.seal_evictions(7) is None


async def test_in_flight_batches_are_never_evicted(new_queue: Factory) -> None:
    q = new_queue(capacity=2)
    await q.put(make())
    await q.put(make())
    await q.next_after(0)
    await q.next_after(1)
    await q.put(make())  # nothing evictable: over the bound by the window
    assert list(q._entries) == [1, 2, 3]
    assert q.stats.evicted_batches == 0


async def test_eviction_counts_per_signal_reach_the_next_batch_once(new_queue: Factory) -> None:
    q = new_queue(capacity=2)
    victim = Batch(7)
    for i in range(SAMPLES):
        victim.append(i % 2, 5_000 + i, 1.0)  # signal 0 at even times, 1 at odd
    await q.put(victim)
    await q.put(make(priority=1))
    carrier = make(priority=1)
    await q.put(carrier)
    assert carrier.evicted == [
        EvictedCount(0, 5, 5_000, 5_008),
        EvictedCount(1, 5, 5_001, 5_009),
    ]
    after = make(priority=1)
    await q.put(after)  # evicts batch 2, which carried nothing
    assert after.evicted == [EvictedCount(0, 4, 1_000, 1_009), EvictedCount(1, 3, 1_001, 1_007),
                             EvictedCount(2, 3, 1_002, 1_008)]  # fmt: skip
    assert await q.seal_evictions(7) is None


async def test_evicted_batch_gives_its_counts_back(new_queue: Factory) -> None:
    q = new_queue(capacity=2)
    await q.put(make(priority=0))
    await q.put(make(priority=0))
    carrier = make(priority=0)
    await q.put(carrier)  # evicts 1; carries its counts
    assert sum(c.samples for c in carrier.evicted) == SAMPLES
    await q.put(make(priority=0))  # evicts 2
    last = make(priority=0)
    await q.put(last)  # evicts 3 = carrier: its counts come back with its samples
    assert sum(c.samples for c in last.evicted) == 2 * SAMPLES
    s = q.stats
    assert s.put_samples == s.evicted_samples + q.samples


async def test_block_waits_for_room_and_takes_an_oversize_batch_when_empty(
    new_queue: Factory,
) -> None:
    q = new_queue(capacity=1, policy=OverflowPolicy.BLOCK)
    await q.put(make())
    blocked = asyncio.create_task(q.put(make()))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    await q.ack(1)
    assert await asyncio.wait_for(blocked, 1) == 2
    await q.ack(2)
    assert await asyncio.wait_for(q.put(make(SAMPLES * 5)), 1) == 3  # larger than the bound
    assert q.stats.evicted_batches == 0


async def test_purge_removes_samples_and_empty_batches(new_queue: Factory) -> None:
    q = new_queue()
    only_zero = Batch(7)
    only_zero.append(0, 1, 1.0)
    await q.put(only_zero)  # 1: only signal 0: deleted
    await q.put(make(6))  # 2: signals 0, 1, 2: rewritten
    await q.next_after(1)  # 2 is in flight and stays so
    removed = await q.purge(frozenset({0}))
    assert removed == 3
    assert q.stats.purged_samples == 3
    assert list(q._entries) == [2]
    got = await q.next_after(0)
    assert set(got.signal_index) == {1, 2}
    assert len(got) == q.samples == 4
    assert await q.purge(frozenset({9})) == 0


async def test_purge_keeps_an_emptied_batch_that_carries_counts(new_queue: Factory) -> None:
    q = new_queue(capacity=1)
    await q.put(make(signal=0))
    carrier = make(1, signal=0)
    await q.put(carrier)  # evicts 1 and carries its counts
    assert await q.purge(frozenset({0})) == 1
    assert len(q) == 1
    got = await q.next_after(0)
    assert len(got) == 0
    assert sum(c.samples for c in got.evicted) == SAMPLES


async def test_reports_are_numbered_kept_and_acknowledged(new_queue: Factory) -> None:
    q = new_queue()
    assert await q.put_report(b"P0300") == 1
    assert await q.put_report(b"P0420") == 2
    await q.ack_report(1)
    await q.ack_report(99)  # unknown: ignored
    assert [(r.report_id, r.payload) for r in await q.pending_reports()] == [(2, b"P0420")]
    assert await q.put_report(b"U0100") == 3


async def test_state_and_resume_position(new_queue: Factory) -> None:
    q = new_queue()
    assert q.load_state("plan") is None
    q.save_state("plan", b"v1")
    q.save_state("plan", b"v2")
    assert q.load_state("plan") == b"v2"
    assert q.resume_position() == -1
    await q.put(make(position=10))
    await q.put(make(position=4))  # resume never goes back
    assert q.resume_position() == 10


async def test_waiters_wake_on_change(new_queue: Factory) -> None:
    q = new_queue()
    await q.put(make())
    empty = asyncio.create_task(q.wait_empty())
    two_acked = asyncio.create_task(q.wait_for_stats(lambda s: s.acked_batches >= 2))
    await asyncio.sleep(0.01)
    assert not empty.done()
    await q.put(make())
    await q.ack(1)
    assert not two_acked.done()
    await q.ack(2)
    await asyncio.wait_for(asyncio.gather(empty, two_acked), 1)


def test_close_is_idempotent_and_queues_are_context_managers(new_queue: Factory) -> None:
    with new_queue() as q:
        pass
    q.close()


async def test_trigger_marks_of_evicted_batches_reach_the_next_batch_once(
    new_queue: Factory,
) -> None:
    q = new_queue(capacity=2)
    victim = make(priority=0)
    victim.triggers.append(TriggerMark("hard_brake", 1_005, 3))
    await q.put(victim)
    await q.put(make(priority=1))
    dropped = make(priority=0)  # below everything pending: evicted on arrival
    dropped.triggers.append(TriggerMark("overheat", 1_007, 3))
    carrier = make(priority=1)
    carrier.triggers.append(TriggerMark("own", 1_009, 3))
    await q.put(carrier)  # evicts the victim
    assert [t.name for t in carrier.triggers] == ["hard_brake", "own"]
    assert await q.put(dropped) == 0
    sealed = await q.seal_evictions(7)
    assert sealed is not None
    assert sealed.triggers == [TriggerMark("overheat", 1_007, 3)]
    assert await q.seal_evictions(7) is None
