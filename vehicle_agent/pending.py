"""The contract of the agent's pending queue: batches (and reports) not yet acknowledged.

Two implementations keep this contract: :class:`vehicle_agent.outbox.Outbox`, the
durable SQLite outbox the agent runs with, and
:class:`vehicle_agent.buffer.BatchBuffer`, an in-memory fake for tests and for
runs that must leave nothing on disk. One contract test suite runs against both.

Life of a batch::

    put ──► pending (numbered) ──► handed to the uplink by next_after ──► ack ──► gone
               │                                                  └──► reject ──► gone, counted
               └──► evicted when full (lowest priority, then oldest; counted per signal)
               └──► purged when consent for its signals is withdrawn (counted)

Numbering: :meth:`PendingQueue.put` gives each batch the next sequence (1, 2, 3,
... per vehicle) before it returns, and stores it with the batch; a batch keeps
its sequence forever, so a resend after a crash is the same batch to the cloud.
Until the first Welcome ever, numbering is provisional: :meth:`on_welcome`
shifts every pending sequence above the cloud's last stored sequence (a car
whose outbox was wiped must not reuse sequences the cloud already holds).

Eviction counts: samples evicted since the last accepted batch are carried by
the next batch :meth:`put` accepts (``Batch.evicted``), so they reach the cloud
exactly once with that batch's sequence; :meth:`seal_evictions` makes an empty
batch to carry them when no data follows. A batch that is itself evicted gives
its carried counts back to the next one. The trigger marks of evicted batches
travel the same way (``Batch.triggers`` of the next batch), so the cloud learns
that a capture fired even when its samples were lost.

Batches handed out by :meth:`next_after` and not yet acknowledged are *in
flight*: they are never evicted (the cloud may have stored them), so the queue
may exceed its bound by the uplink's window.

Reports (fault codes) are opaque payloads with their own increasing
``report_id``, kept until :meth:`ack_report`.

Small state (the running plan, the consent, the resume position) is kept with
:meth:`save_state` / :meth:`load_state`, in the same store as the batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from vehicle_agent.batching import Batch

__all__ = ["OverflowPolicy", "PendingQueue", "PendingReport", "QueueStats"]


class OverflowPolicy(StrEnum):
    """What :meth:`PendingQueue.put` does when the queue is full."""

    #: Wait for room (a log replay slows down to the uplink's pace; nothing is lost).
    BLOCK = "block"
    #: Evict the lowest-priority, then oldest, batches not in flight (a live bus
    #: must not stall); evicted samples are counted per signal and reported.
    EVICT = "evict"


@dataclass(slots=True)
class QueueStats:
    """Counters of a pending queue since it was opened (not persisted)."""

    put_batches: int = 0
    put_samples: int = 0
    acked_batches: int = 0
    acked_samples: int = 0
    rejected_batches: int = 0
    rejected_samples: int = 0
    evicted_batches: int = 0
    evicted_samples: int = 0
    purged_samples: int = 0


@dataclass(frozen=True, slots=True)
class PendingReport:
    report_id: int
    payload: bytes


class PendingQueue(Protocol):
    """Batches and reports waiting for the cloud's acknowledgement."""

    stats: QueueStats

    def __len__(self) -> int:
        """Batches pending (including those in flight)."""
        ...

    @property
    def samples(self) -> int:
        """Samples pending."""
        ...

    @property
    def size_bytes(self) -> int:
        """Size of the pending batches as the queue accounts it against its bound."""
        ...

    async def put(self, batch: Batch) -> int:
        """Accept a closed batch durably and return the sequence it was given.

        Sets ``batch.sequence`` and attaches pending eviction counts to
        ``batch.evicted``. Under ``BLOCK`` waits for room; under ``EVICT`` evicts.
        """
        ...

    async def seal_evictions(self, catalog_id: int) -> Batch | None:
        """Put an empty batch carrying pending eviction counts and marks, if there are any."""
        ...

    async def next_after(self, sequence: int) -> Batch:
        """Wait for the pending batch with the smallest sequence above *sequence*."""
        ...

    async def on_welcome(self, last_stored: int) -> None:
        """The cloud stores everything up to *last_stored*: renumber if provisional,
        drop what is stored, and forget what was in flight on the old stream."""
        ...

    async def ack(self, sequence: int) -> Batch | None:
        """Remove the batch the cloud stored; ``None`` when it is not pending."""
        ...

    async def ack_through(self, sequence: int) -> int:
        """Remove every batch at or below *sequence*; return how many."""
        ...

    async def reject(self, sequence: int) -> Batch | None:
        """Remove a batch the cloud refused for good, counting it."""
        ...

    async def purge(self, signals: frozenset[int]) -> int:
        """Remove every pending sample of *signals* (consent withdrawn); return how many.

        Batches left empty are removed unless they carry eviction counts.
        """
        ...

    async def put_report(self, payload: bytes) -> int:
        """Keep a report until it is acknowledged; return its report_id (1, 2, ...)."""
        ...

    async def pending_reports(self) -> list[PendingReport]: ...

    async def ack_report(self, report_id: int) -> None: ...

    def load_state(self, key: str) -> bytes | None: ...

    def save_state(self, key: str, value: bytes) -> None: ...

    def resume_position(self) -> int:
        """Largest ``Batch.position`` ever accepted (-1: none); survives restarts."""
        ...

    async def wait_empty(self) -> None:
        """Return once no batch is pending."""
        ...

    async def wait_for_stats(self, predicate: Callable[[QueueStats], bool]) -> None:
        """Return once *predicate* holds for :attr:`stats` (checked at every change)."""
        ...

    def close(self) -> None:
        """Release the store; idempotent."""
        ...
