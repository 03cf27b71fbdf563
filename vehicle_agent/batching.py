"""Group decoded samples into batches by size and age.

A :class:`Batch` holds samples in columns (signal index, timestamp, value), the
shape they travel in on the wire. The :class:`Batcher` is pure: it never sleeps
or reads a clock of its own (the clock is injected), so tests drive it frame by
frame.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


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


#: One sample ready to send: (catalog index, microseconds since the epoch, value).
TimedSample = tuple[int, int, float]


class Batcher:
    """Close a batch when it holds ``max_samples`` samples or is ``max_age`` seconds old.

    The samples of one frame are never split across two batches unless the frame
    alone has more than ``max_samples`` signals.

    ``position`` (the ordinal of the source frame the samples come from) lets a
    restarted agent resume a log: each closed batch records the position of the
    last frame whose samples are all in it or in an earlier batch.
    ``priorities`` (indexed by catalog index) give each batch the highest
    priority of the signals it holds.
    """

    def __init__(
        self,
        catalog_id: int,
        *,
        max_samples: int = 1000,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        priorities: Sequence[int] | None = None,
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
        self._position = -1
        self.priorities: Sequence[int] | None = priorities

    @property
    def pending(self) -> int:
        """Samples waiting in the open batch."""
        return 0 if self._current is None else len(self._current)

    def add(self, samples: Sequence[TimedSample], position: int = -1) -> list[Batch]:
        """Add the samples of one frame; return the batches this closed (often none)."""
        if not samples:
            self._position = max(self._position, position)
            return []
        closed: list[Batch] = []
        current = self._current
        if current is not None and len(current) + len(samples) > self._max_samples:
            closed.append(self._close(current))
            current = None
        if current is None:
            current = self._open()
        if len(current) + len(samples) < self._max_samples:
            # The common case: the frame fits with room to spare. Transposing with
            # zip and extending the arrays keeps the per-sample work in C.
            indices, stamps, values = zip(*samples, strict=True)
            current.signal_index.extend(indices)
            current.timestamp_us.extend(stamps)
            current.value.extend(values)
            if position > self._position:
                self._position = position
            self._current = current
            return closed
        append_index = current.signal_index.append
        append_ts = current.timestamp_us.append
        append_value = current.value.append
        for index, ts_us, value in samples:
            append_index(index)
            append_ts(ts_us)
            append_value(value)
            if len(current.signal_index) >= self._max_samples:
                closed.append(self._close(current))
                current = self._open()
                append_index = current.signal_index.append
                append_ts = current.timestamp_us.append
                append_value = current.value.append
        self._position = max(self._position, position)
        if closed and len(current) == 0:
            # The frame ended exactly at a batch boundary: the last batch holds all of it.
            closed[-1].position = self._position
        self._current = current if len(current) else None
        return closed

    def add_pairs(
        self, timestamp_us: int, samples: Sequence[tuple[int, float]], position: int = -1
    ) -> list[Batch]:
        """Add the (index, value) samples of one frame taken at *timestamp_us*.

        The same as :meth:`add` with the time in every sample, without building
        those triples when the frame fits in the open batch.
        """
        current = self._current
        count = len(samples)
        if current is None or not count or len(current) + count >= self._max_samples:
            return self.add([(index, timestamp_us, value) for index, value in samples], position)
        indices, values = zip(*samples, strict=True)
        current.signal_index.extend(indices)
        current.timestamp_us.extend([timestamp_us] * count)
        current.value.extend(values)
        if position > self._position:
            self._position = position
        return []

    def add_columns(
        self,
        first_position: int,
        frames: int,
        frame_row: npt.NDArray[np.intp],
        signal_index: npt.NDArray[np.uint32],
        timestamp_us: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
    ) -> list[Batch]:
        """Add the samples of *frames* consecutive frames at once, in columns.

        Sample ``i`` belongs to frame ``frame_row[i]`` (0-based, non-decreasing),
        whose position is ``first_position + frame_row[i]``; frames may have no
        samples. The batches closed, their positions and what stays open are
        exactly those of :meth:`add` called frame by frame: a Python step per
        batch, not per frame.
        """
        closed: list[Batch] = []
        if frames <= 0:
            return closed
        ends = np.cumsum(np.bincount(frame_row, minlength=frames)).tolist()
        max_samples = self._max_samples
        frame = 0  # the next frame to add
        start = 0  # its first sample
        while frame < frames:
            current = self._current
            room = max_samples - (0 if current is None else len(current))
            # Frames that fit with room to spare go in as one slice (add's common case).
            fit = bisect_left(ends, start + room, frame)
            if fit > frame:
                stop = ends[fit - 1]
                if stop > start:
                    if current is None:
                        current = self._current = self._open()
                    _extend(current, signal_index, timestamp_us, value, start, stop)
                    start = stop
                self._position = max(self._position, first_position + fit - 1)
                frame = fit
                continue
            # The next frame fills the open batch exactly, overflows it or is
            # larger than a batch.
            count = ends[frame] - start
            position = first_position + frame
            if current is not None and count > room:
                closed.append(self._close(current))
                self._current = None
                continue
            if current is None:
                current = self._open()
            while count:
                take = min(count, max_samples - len(current))
                _extend(current, signal_index, timestamp_us, value, start, start + take)
                start += take
                count -= take
                if len(current) >= max_samples:
                    closed.append(self._close(current))
                    current = self._open()
            self._position = max(self._position, position)
            if len(current) == 0:
                closed[-1].position = self._position
                self._current = None
            else:
                self._current = current
            frame += 1
        return closed

    def add_frame(
        self, timestamp: float, samples: Iterable[tuple[int, float]], position: int = -1
    ) -> list[Batch]:
        """Add the samples of one frame taken at *timestamp* (seconds)."""
        ts_us = to_microseconds(timestamp)
        return self.add([(index, ts_us, float(value)) for index, value in samples], position)

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
        return None if batch is None else self._close(batch)

    def drop(self, signals: frozenset[int]) -> int:
        """Drop the open batch's samples of *signals*; return how many."""
        current = self._current
        if current is None or not signals:
            return 0
        keep = [i for i, index in enumerate(current.signal_index) if index not in signals]
        dropped = len(current) - len(keep)
        if dropped:
            kept = Batch(current.catalog_id)
            for i in keep:
                kept.append(current.signal_index[i], current.timestamp_us[i], current.value[i])
            self._current = kept if len(kept) else None
        return dropped

    def _open(self) -> Batch:
        self._opened_at = self._clock()
        return Batch(self._catalog_id)

    def _close(self, batch: Batch) -> Batch:
        batch.position = self._position
        priorities = self.priorities
        if priorities is not None and len(batch):
            batch.priority = max(map(priorities.__getitem__, set(batch.signal_index)))
        return batch


def _extend(
    batch: Batch,
    signal_index: npt.NDArray[np.uint32],
    timestamp_us: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    start: int,
    stop: int,
) -> None:
    """Append samples ``start:stop`` of the columns to *batch* (memory copies)."""
    batch.signal_index.frombytes(signal_index[start:stop].astype(np.uint32, copy=False).tobytes())
    batch.timestamp_us.frombytes(timestamp_us[start:stop].astype(np.int64, copy=False).tobytes())
    batch.value.frombytes(value[start:stop].astype(np.float64, copy=False).tobytes())
