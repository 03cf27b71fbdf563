"""Group decoded samples into batches by size and age.

A :class:`Batch` holds samples in columns (signal index, timestamp, value), the
shape they travel in on the wire. The :class:`Batcher` is pure: it never sleeps
or reads a clock of its own (the clock is injected), so tests drive it frame by
frame.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EvictedCount:
    """Samples of one signal the outbox evicted because it was full."""

    signal_index: int
    samples: int
    first_time_us: int
    last_time_us: int


@dataclass(frozen=True, slots=True)
class TriggerMark:
    """A condition-triggered capture that fired (reported with the batch)."""

    name: str
    time_us: int
    plan_version: int


@dataclass(slots=True)
class Batch:
    """Samples of one vehicle in columns.

    ``timestamp_us`` are microseconds since the Unix epoch, rounded from the CAN
    frames' own timestamps. ``sequence`` is 0 until the pending queue (the
    outbox) numbers the batch as it accepts it; from then on it never changes,
    so a resend is recognised by the cloud.

    ``priority`` decides what an outbox evicts first when full (lowest first,
    then oldest). ``position`` is the source position (frames consumed from a
    log) up to which every frame's samples are in this batch or an earlier one;
    a restarted agent resumes a log there. -1: not from a resumable source.
    ``evicted`` and ``triggers`` ride along to the cloud with the batch.
    """

    catalog_id: int
    signal_index: array[int] = field(default_factory=lambda: array("I"))
    timestamp_us: array[int] = field(default_factory=lambda: array("q"))
    value: array[float] = field(default_factory=lambda: array("d"))
    sequence: int = 0
    priority: int = 0
    position: int = -1
    evicted: list[EvictedCount] = field(default_factory=list)
    triggers: list[TriggerMark] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.signal_index)

    def append(self, index: int, timestamp_us: int, value: float) -> None:
        self.signal_index.append(index)
        self.timestamp_us.append(timestamp_us)
        self.value.append(value)


def to_microseconds(timestamp: float) -> int:
    """Seconds (a python-can timestamp) to whole microseconds, rounded to nearest."""
    return round(timestamp * 1_000_000)


class Batcher:
    """Close a batch when it holds ``max_samples`` samples or is ``max_age`` seconds old.

    The samples of one frame are never split across two batches unless the frame
    alone has more than ``max_samples`` signals.
    """

    def __init__(
        self,
        catalog_id: int,
        *,
        max_samples: int = 1000,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples}")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age}")
        self._catalog_id = catalog_id
        self._max_samples = max_samples
        self._max_age = max_age
        self._clock = clock
        self._current: Batch | None = None
        self._opened_at = 0.0

    @property
    def pending(self) -> int:
        """Samples waiting in the open batch."""
        return 0 if self._current is None else len(self._current)

    def add(self, timestamp: float, samples: Iterable[tuple[int, float]]) -> list[Batch]:
        """Add the samples of one frame; return the batches this closed (often none)."""
        samples = list(samples)
        if not samples:
            return []
        closed: list[Batch] = []
        current = self._current
        if current is not None and len(current) + len(samples) > self._max_samples:
            closed.append(current)
            current = None
        if current is None:
            current = Batch(self._catalog_id)
            self._opened_at = self._clock()
        ts_us = to_microseconds(timestamp)
        for index, value in samples:
            current.append(index, ts_us, float(value))
            if len(current) >= self._max_samples:
                closed.append(current)
                current = Batch(self._catalog_id)
                self._opened_at = self._clock()
        self._current = current if len(current) else None
        return closed

    def poll(self) -> Batch | None:
        """Close the open batch if it has reached its maximum age."""
        if self._current is not None and self._clock() - self._opened_at >= self._max_age:
            return self.flush()
        return None

    def time_to_deadline(self) -> float | None:
        """Seconds until the open batch must close, ``None`` when nothing is open."""
        if self._current is None:
            return None
        return max(0.0, self._max_age - (self._clock() - self._opened_at))

    def flush(self) -> Batch | None:
        """Close and return the open batch, if any."""
        batch, self._current = self._current, None
        return batch
