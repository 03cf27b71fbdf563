"""The bounded buffer of batches the cloud has not acknowledged yet.

Every closed batch waits here until the cloud acknowledges it (then it is
removed) or rejects it (removed and counted). The buffer is bounded in batches;
when it is full a producer either waits (``block``: a log replay slows down to
the uplink's pace) or the oldest batch is dropped and counted (``drop_oldest``:
a live bus must not stall). Nothing leaves without being counted.

This buffer lives in memory; the durable outbox replaces it behind the same
methods.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from vehicle_agent.batching import Batch


class OverflowPolicy(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


@dataclass(slots=True)
class BufferStats:
    dropped_batches: int = 0
    dropped_samples: int = 0
    rejected_batches: int = 0
    rejected_samples: int = 0
    acked_batches: int = 0
    acked_samples: int = 0


class BatchBuffer:
    """Batches in the order they were closed, each under a local key."""

    def __init__(
        self, max_batches: int = 1024, policy: OverflowPolicy = OverflowPolicy.BLOCK
    ) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {max_batches}")
        self.max_batches = max_batches
        self.policy = policy
        self.stats = BufferStats()
        self._batches: OrderedDict[int, Batch] = OrderedDict()
        self._next_key = 1
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self._batches.values())

    async def put(self, batch: Batch) -> None:
        """Add a closed batch; wait or drop the oldest when the buffer is full."""
        async with self._changed:
            if self.policy is OverflowPolicy.BLOCK:
                await self._changed.wait_for(lambda: len(self._batches) < self.max_batches)
            while len(self._batches) >= self.max_batches:
                _, oldest = self._batches.popitem(last=False)
                self.stats.dropped_batches += 1
                self.stats.dropped_samples += len(oldest)
            self._batches[self._next_key] = batch
            self._next_key += 1
            self._changed.notify_all()

    async def next_after(self, key: int) -> tuple[int, Batch]:
        """Wait for the first batch whose key is greater than *key*."""
        async with self._changed:
            found: tuple[int, Batch] | None = None

            def ready() -> bool:
                nonlocal found
                found = self._first_after(key)
                return found is not None

            await self._changed.wait_for(ready)
            assert found is not None
            return found

    def _first_after(self, key: int) -> tuple[int, Batch] | None:
        # Keys increase with insertion order, so the first larger key is the next batch.
        for k, batch in self._batches.items():
            if k > key:
                return k, batch
        return None

    async def ack(self, sequence: int) -> Batch | None:
        """Remove the batch numbered *sequence*; return it, or None if not held."""
        return await self._remove(lambda b: b.sequence == sequence, rejected=False)

    async def ack_through(self, sequence: int) -> int:
        """Remove every numbered batch at or below *sequence* (already stored)."""
        removed = 0
        while await self._remove(lambda b: 0 < b.sequence <= sequence, rejected=False):
            removed += 1
        return removed

    async def reject(self, sequence: int) -> Batch | None:
        """Remove a batch the cloud refused for good, counting it."""
        return await self._remove(lambda b: b.sequence == sequence, rejected=True)

    async def _remove(self, match: Callable[[Batch], bool], *, rejected: bool) -> Batch | None:
        async with self._changed:
            for k, batch in self._batches.items():
                if match(batch):
                    del self._batches[k]
                    if rejected:
                        self.stats.rejected_batches += 1
                        self.stats.rejected_samples += len(batch)
                    else:
                        self.stats.acked_batches += 1
                        self.stats.acked_samples += len(batch)
                    self._changed.notify_all()
                    return batch
        return None

    async def wait_for_stats(self, predicate: Callable[[BufferStats], bool]) -> None:
        """Return once *predicate* holds for the counters (checked at every change)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.stats))

    async def wait_empty(self) -> None:
        """Return once every batch has been acknowledged, rejected or dropped."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._batches)
