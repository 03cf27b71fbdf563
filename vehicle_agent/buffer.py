"""The bookkeeping every pending queue shares, and the in-memory queue built on it.

:class:`QueueCore` implements the whole :class:`~vehicle_agent.pending.PendingQueue`
contract (numbering, provisional renumbering, in-flight protection, eviction by
priority then age, eviction counts carried by the next batch, purge, reports,
waiters) over an in-memory index of the pending batches. It leaves two things to
a subclass: keeping the batches themselves (:meth:`QueueCore._load`) and making
each change stick (:meth:`QueueCore._write`, one :class:`QueueChange` at a time,
all or nothing). Every change is written before the index moves, so a queue whose
store fails stays as it was.

:class:`BatchBuffer` keeps the batches in dicts: the fake used by tests and by
runs that must leave nothing on disk. It is bounded in batches.
:class:`vehicle_agent.outbox.Outbox` keeps them in SQLite and is bounded in bytes.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from vehicle_agent.batching import Batch, EvictedCount, TriggerMark
from vehicle_agent.pending import OverflowPolicy, PendingReport, QueueStats

__all__ = ["BatchBuffer", "QueueChange", "QueueCore", "QueueEntry", "QueueSnapshot"]

# Bytes one sample takes in the three columns (uint32 index, int64 time, float64 value).
SAMPLE_BYTES = 20


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """What the index knows about a pending batch without reading it."""

    priority: int
    weight: int  # what the batch costs against the bound
    samples: int
    nbytes: int


@dataclass(slots=True)
class QueueChange:
    """One atomic change of a store, applied in field order.

    ``renumber`` adds an offset to every stored sequence first; ``delete`` then
    names sequences after renumbering. ``None`` meta fields are left unchanged.
    """

    renumber: int = 0
    delete: list[int] = field(default_factory=list)
    rewrite: list[Batch] = field(default_factory=list)
    insert: Batch | None = None
    next_sequence: int | None = None
    provisional: bool | None = None
    resume_position: int | None = None
    pending_evictions: list[EvictedCount] | None = None
    pending_triggers: list[TriggerMark] | None = None
    next_report_id: int | None = None
    put_report: PendingReport | None = None
    ack_report: int | None = None


@dataclass(slots=True)
class QueueSnapshot:
    """The state a queue starts from (empty, or recovered from a store)."""

    entries: dict[int, QueueEntry] = field(default_factory=dict)
    next_sequence: int = 1
    provisional: bool = True
    resume_position: int = -1
    pending_evictions: list[EvictedCount] = field(default_factory=list)
    pending_triggers: list[TriggerMark] = field(default_factory=list)
    next_report_id: int = 1
    reports: dict[int, bytes] = field(default_factory=dict)
    state: dict[str, bytes] = field(default_factory=dict)


def column_bytes(batch: Batch) -> int:
    return len(batch) * SAMPLE_BYTES


def without_signals(batch: Batch, signals: frozenset[int]) -> Batch | None:
    """A copy of *batch* without the samples of *signals*; ``None`` if none matched."""
    keep = [i for i, s in enumerate(batch.signal_index) if s not in signals]
    if len(keep) == len(batch):
        return None
    ts, val = batch.timestamp_us, batch.value
    return Batch(
        catalog_id=batch.catalog_id,
        signal_index=array("I", [batch.signal_index[i] for i in keep]),
        timestamp_us=array("q", [ts[i] for i in keep]),
        value=array("d", [val[i] for i in keep]),
        sequence=batch.sequence,
        priority=batch.priority,
        position=batch.position,
        evicted=list(batch.evicted),
        triggers=list(batch.triggers),
    )


class _Tally:
    """Evicted samples per signal: count, first and last timestamp."""

    def __init__(self, counts: Iterable[EvictedCount] = ()) -> None:
        self._by_signal: dict[int, list[int]] = {}
        self.merge(counts)

    def __bool__(self) -> bool:
        return bool(self._by_signal)

    def merge(self, counts: Iterable[EvictedCount]) -> None:
        for c in counts:
            self._add(c.signal_index, c.samples, c.first_time_us, c.last_time_us)

    def count(self, batch: Batch) -> None:
        for s, t in zip(batch.signal_index, batch.timestamp_us, strict=True):
            self._add(s, 1, t, t)

    def _add(self, signal: int, n: int, first: int, last: int) -> None:
        cur = self._by_signal.get(signal)
        if cur is None:
            self._by_signal[signal] = [n, first, last]
        else:
            cur[0] += n
            cur[1] = min(cur[1], first)
            cur[2] = max(cur[2], last)

    def counts(self) -> list[EvictedCount]:
        return [EvictedCount(s, n, f, la) for s, (n, f, la) in sorted(self._by_signal.items())]


class QueueCore(ABC):
    """The pending-queue contract over an index; subclasses keep the batches.

    One asyncio condition guards everything: its lock is held across each
    store write, so changes reach the store in the order the index sees them,
    and every waiter is woken by the same ``notify_all``.
    """

    def __init__(self, limit: int, policy: OverflowPolicy, snapshot: QueueSnapshot) -> None:
        self.policy = policy
        self.stats = QueueStats()
        self._limit = limit
        self._entries: dict[int, QueueEntry] = {}  # in sequence order
        self._by_priority: dict[int, dict[int, None]] = {}  # ordered sets, oldest first
        self._weight = self._samples = self._nbytes = 0
        for seq, entry in snapshot.entries.items():
            self._add_entry(seq, entry)
        # After a restart any batch may have been sent on a stream that died:
        # the cloud may hold it, so it must not be evicted before the next Welcome.
        self._in_flight: set[int] = set(snapshot.entries)
        self._next_sequence = snapshot.next_sequence
        self._provisional = snapshot.provisional
        self._resume = snapshot.resume_position
        self._pending = snapshot.pending_evictions
        # Trigger marks of evicted batches, for the next batch to carry.
        self._pending_marks = list(snapshot.pending_triggers)
        self._next_report = snapshot.next_report_id
        self._reports = dict(snapshot.reports)
        self._state = dict(snapshot.state)
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _weigh(self, batch: Batch) -> int:
        """What *batch* costs against the bound."""

    @abstractmethod
    async def _load(self, sequences: list[int]) -> list[Batch]:
        """The stored batches, in the order asked."""

    @abstractmethod
    async def _write(self, change: QueueChange) -> None:
        """Apply *change* to the store, all or nothing."""

    @abstractmethod
    def _write_state(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release the store; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ index
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def size_bytes(self) -> int:
        return self._nbytes

    def _add_entry(self, seq: int, entry: QueueEntry) -> None:
        self._entries[seq] = entry
        self._by_priority.setdefault(entry.priority, {})[seq] = None
        self._weight += entry.weight
        self._samples += entry.samples
        self._nbytes += entry.nbytes

    def _drop_entry(self, seq: int) -> QueueEntry:
        entry = self._entries.pop(seq)
        same = self._by_priority[entry.priority]
        del same[seq]
        if not same:
            del self._by_priority[entry.priority]
        self._weight -= entry.weight
        self._samples -= entry.samples
        self._nbytes -= entry.nbytes
        self._in_flight.discard(seq)
        return entry

    def _replace_entry(self, seq: int, entry: QueueEntry) -> QueueEntry:
        # Assigning an existing key keeps its place in sequence order; the
        # priority and the in-flight mark stay as they were.
        before = self._entries[seq]
        self._entries[seq] = entry
        self._weight += entry.weight - before.weight
        self._samples += entry.samples - before.samples
        self._nbytes += entry.nbytes - before.nbytes
        return before

    def _entry_for(self, batch: Batch) -> QueueEntry:
        return QueueEntry(batch.priority, self._weigh(batch), len(batch), column_bytes(batch))

    def _has_room(self, weight: int) -> bool:
        # A batch larger than the whole bound still goes into an empty queue:
        # waiting for room that can never come would deadlock the producer.
        return not self._entries or self._weight + weight <= self._limit

    def _plan_eviction(self, batch: Batch, weight: int) -> tuple[list[int], bool]:
        """Victims that make room for *batch*, and whether *batch* itself goes first."""
        need = self._weight + weight - self._limit
        victims: list[int] = []
        if need <= 0:
            return victims, False
        for priority in sorted(self._by_priority):
            if priority > batch.priority:
                # Every older batch left outranks the new one: it is the one to
                # lose. An empty batch only carries counts, so it always stays.
                return ([], True) if len(batch) else (victims, False)
            for seq in self._by_priority[priority]:
                if seq in self._in_flight:
                    continue
                victims.append(seq)
                need -= self._entries[seq].weight
                if need <= 0:
                    return victims, False
        # What is left is in flight: the queue exceeds its bound by the window.
        return victims, False

    # ------------------------------------------------------------ batches
    async def put(self, batch: Batch) -> int:
        """See :meth:`PendingQueue.put`; returns 0 when *batch* was evicted on arrival."""
        async with self._changed:
            return await self._put_locked(batch, seal=False)

    async def seal_evictions(self, catalog_id: int) -> Batch | None:
        async with self._changed:
            if not (self._pending or self._pending_marks):
                return None
            batch = Batch(catalog_id)
            return batch if await self._put_locked(batch, seal=True) else None

    async def _put_locked(self, batch: Batch, *, seal: bool) -> int:
        weight = self._weigh(batch)
        if self.policy is OverflowPolicy.BLOCK:
            await self._changed.wait_for(lambda: self._has_room(weight))
            victims: list[int] = []
            drop = False
        else:
            victims, drop = self._plan_eviction(batch, weight)
        if seal and not (self._pending or self._pending_marks):
            return 0  # another put carried the counts away while this one waited
        tally = _Tally(self._pending)
        marks = list(self._pending_marks)
        victim_samples = 0
        for victim in await self._load(victims):
            tally.count(victim)
            tally.merge(victim.evicted)  # counts it carried are not lost with it
            marks.extend(victim.triggers)  # nor the trigger marks
            victim_samples += len(victim)
        resume = max(self._resume, batch.position)
        if drop:
            tally.count(batch)
            tally.merge(batch.evicted)
            marks.extend(batch.triggers)
            await self._write(
                QueueChange(
                    resume_position=resume,
                    pending_evictions=tally.counts(),
                    pending_triggers=marks,
                )
            )
            self._pending = tally.counts()
            self._pending_marks = marks
            self._resume = resume
            self._count_put(batch)
            self.stats.evicted_batches += 1
            self.stats.evicted_samples += len(batch)
            self._changed.notify_all()
            return 0
        tally.merge(batch.evicted)
        carried, batch.evicted = batch.evicted, tally.counts()
        own_marks, batch.triggers = batch.triggers, [*marks, *batch.triggers]
        batch.sequence = sequence = self._next_sequence
        try:
            await self._write(
                QueueChange(
                    delete=victims,
                    insert=batch,
                    next_sequence=sequence + 1,
                    resume_position=resume,
                    pending_evictions=[],
                    pending_triggers=[],
                )
            )
        except BaseException:
            batch.sequence, batch.evicted, batch.triggers = 0, carried, own_marks
            raise
        for victim_seq in victims:
            self._drop_entry(victim_seq)
        self._add_entry(
            sequence, QueueEntry(batch.priority, weight, len(batch), column_bytes(batch))
        )
        self._next_sequence = sequence + 1
        self._resume = resume
        self._pending = []
        self._pending_marks = []
        self._count_put(batch)
        self.stats.evicted_batches += len(victims)
        self.stats.evicted_samples += victim_samples
        self._changed.notify_all()
        return sequence

    def _count_put(self, batch: Batch) -> None:
        self.stats.put_batches += 1
        self.stats.put_samples += len(batch)

    async def next_after(self, sequence: int) -> Batch:
        async with self._changed:
            found = 0

            def ready() -> bool:
                nonlocal found
                # Sequences ascend in the index; the uplink asks just past its
                # window, so the scan passes at most the batches in flight.
                found = next((s for s in self._entries if s > sequence), 0)
                return found != 0

            await self._changed.wait_for(ready)
            self._in_flight.add(found)
            (batch,) = await self._load([found])
            return batch

    async def on_welcome(self, last_stored: int) -> None:
        async with self._changed:
            offset = last_stored if self._provisional else 0
            stored = [s + offset for s in self._entries if s + offset <= last_stored]
            await self._write(
                QueueChange(
                    renumber=offset,
                    delete=stored,
                    next_sequence=self._next_sequence + offset,
                    provisional=False,
                )
            )
            if offset:
                old = self._entries
                self._entries, self._by_priority = {}, {}
                self._weight = self._samples = self._nbytes = 0
                for seq, entry in old.items():
                    self._add_entry(seq + offset, entry)
            self._next_sequence += offset
            self._provisional = False
            self._remove(stored, rejected=False)
            self._in_flight.clear()
            self._changed.notify_all()

    async def ack(self, sequence: int) -> Batch | None:
        return await self._take(sequence, rejected=False)

    async def reject(self, sequence: int) -> Batch | None:
        return await self._take(sequence, rejected=True)

    async def _take(self, sequence: int, *, rejected: bool) -> Batch | None:
        async with self._changed:
            if sequence not in self._entries:
                return None
            (batch,) = await self._load([sequence])
            await self._write(QueueChange(delete=[sequence]))
            self._remove([sequence], rejected=rejected)
            self._changed.notify_all()
            return batch

    async def ack_through(self, sequence: int) -> int:
        async with self._changed:
            stored = [s for s in self._entries if s <= sequence]
            if stored:
                await self._write(QueueChange(delete=stored))
                self._remove(stored, rejected=False)
                self._changed.notify_all()
            return len(stored)

    def _remove(self, sequences: list[int], *, rejected: bool) -> None:
        for seq in sequences:
            entry = self._drop_entry(seq)
            if rejected:
                self.stats.rejected_batches += 1
                self.stats.rejected_samples += entry.samples
            else:
                self.stats.acked_batches += 1
                self.stats.acked_samples += entry.samples

    async def purge(self, signals: frozenset[int], *, chunk: int = 64) -> int:
        """See :meth:`PendingQueue.purge`. Works *chunk* batches per store write,
        so a queue on disk never holds all of itself in memory at once."""
        removed = 0
        async with self._changed:
            sequences = list(self._entries)
            for start in range(0, len(sequences), chunk):
                rewrite: list[Batch] = []
                delete: list[int] = []
                for batch in await self._load(sequences[start : start + chunk]):
                    kept = without_signals(batch, signals)
                    if kept is None:
                        continue
                    removed += len(batch) - len(kept)
                    if len(kept) or kept.evicted:
                        rewrite.append(kept)
                    else:
                        delete.append(batch.sequence)
                if not rewrite and not delete:
                    continue
                await self._write(QueueChange(delete=delete, rewrite=rewrite))
                for seq in delete:
                    self.stats.purged_samples += self._drop_entry(seq).samples
                for kept in rewrite:
                    before = self._replace_entry(kept.sequence, self._entry_for(kept))
                    self.stats.purged_samples += before.samples - len(kept)
                self._changed.notify_all()
        return removed

    # ------------------------------------------------------------ reports and state
    async def put_report(self, payload: bytes) -> int:
        async with self._changed:
            report_id = self._next_report
            report = PendingReport(report_id, bytes(payload))
            await self._write(QueueChange(next_report_id=report_id + 1, put_report=report))
            self._next_report = report_id + 1
            self._reports[report_id] = report.payload
            return report_id

    async def pending_reports(self) -> list[PendingReport]:
        return [PendingReport(rid, p) for rid, p in sorted(self._reports.items())]

    async def ack_report(self, report_id: int) -> None:
        async with self._changed:
            if report_id in self._reports:
                await self._write(QueueChange(ack_report=report_id))
                del self._reports[report_id]

    def load_state(self, key: str) -> bytes | None:
        return self._state.get(key)

    def save_state(self, key: str, value: bytes) -> None:
        self._write_state(key, bytes(value))
        self._state[key] = bytes(value)

    def resume_position(self) -> int:
        return self._resume

    # ------------------------------------------------------------ waiting
    async def wait_empty(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._entries)

    async def wait_for_stats(self, predicate: Callable[[QueueStats], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.stats))


class BatchBuffer(QueueCore):
    """The pending queue in memory, bounded in batches; nothing survives the process."""

    def __init__(
        self, max_batches: int = 1024, policy: OverflowPolicy = OverflowPolicy.BLOCK
    ) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {max_batches}")
        super().__init__(max_batches, policy, QueueSnapshot())
        self.max_batches = max_batches
        self._batches: dict[int, Batch] = {}

    def _weigh(self, batch: Batch) -> int:
        return 1

    async def _load(self, sequences: list[int]) -> list[Batch]:
        return [self._batches[s] for s in sequences]

    async def _write(self, change: QueueChange) -> None:
        if change.renumber:
            for batch in self._batches.values():
                batch.sequence += change.renumber
            self._batches = {b.sequence: b for b in self._batches.values()}
        for seq in change.delete:
            del self._batches[seq]
        for batch in change.rewrite:
            self._batches[batch.sequence] = batch
        if change.insert is not None:
            self._batches[change.insert.sequence] = change.insert

    def _write_state(self, key: str, value: bytes) -> None:
        pass  # the index's dict is the only copy

    def close(self) -> None:
        pass
