from __future__ import annotations

import random

import numpy as np
import pytest

from vehicle_agent.batching import Batch, Batcher, to_microseconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_closes_batch_at_max_samples_without_splitting_a_frame() -> None:
    b = Batcher(7, max_samples=5)
    assert b.add_frame(1.0, [(0, 1.0), (1, 2.0)]) == []
    assert b.add_frame(1.1, [(0, 3.0), (1, 4.0)]) == []
    closed = b.add_frame(1.2, [(0, 5.0), (1, 6.0)])  # would make 6 > 5: the open batch closes first
    assert [len(x) for x in closed] == [4]
    assert closed[0].catalog_id == 7
    assert list(closed[0].value) == [1.0, 2.0, 3.0, 4.0]
    assert b.pending == 2
    last = b.flush()
    assert last is not None
    assert list(last.signal_index) == [0, 1]
    assert b.flush() is None


def test_a_frame_larger_than_a_batch_is_split() -> None:
    b = Batcher(1, max_samples=2)
    closed = b.add_frame(0.5, [(i, float(i)) for i in range(5)])
    assert [list(x.signal_index) for x in closed] == [[0, 1], [2, 3]]
    rest = b.flush()
    assert rest is not None
    assert list(rest.signal_index) == [4]


def test_keeps_can_timestamps_in_microseconds() -> None:
    b = Batcher(1)
    b.add_frame(1635188455.020850, [(3, 650.5)])
    batch = b.flush()
    assert batch is not None
    assert list(batch.timestamp_us) == [1635188455020850]
    assert to_microseconds(0.0000005) == 0  # rounds half to even at the µs boundary
    assert to_microseconds(1.0000016) == 1000002


def test_closes_by_age_with_injected_clock() -> None:
    clock = FakeClock()
    b = Batcher(1, max_samples=1000, max_age=2.0, clock=clock)
    assert b.poll() is None
    assert b.time_to_deadline() is None
    b.add_frame(0.0, [(0, 1.0)])
    clock.now += 1.5
    assert b.poll() is None
    assert b.time_to_deadline() == pytest.approx(0.5)
    clock.now += 0.5
    aged = b.poll()
    assert aged is not None
    assert len(aged) == 1
    assert b.pending == 0


def test_frames_without_samples_open_nothing() -> None:
    b = Batcher(1)
    assert b.add_frame(1.0, []) == []
    assert b.flush() is None


@pytest.mark.parametrize(("samples", "age"), [(0, 1.0), (10, 0.0)])
def test_rejects_bad_limits(samples: int, age: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        Batcher(1, max_samples=samples, max_age=age)


def test_position_marks_the_last_frame_wholly_inside_a_closed_batch() -> None:
    b = Batcher(1, max_samples=3)
    assert b.add([(0, 10, 1.0), (1, 10, 2.0)], position=0) == []
    assert b.add([], position=1) == []  # a frame with no samples still counts as read
    closed = b.add([(0, 20, 3.0), (1, 20, 4.0)], position=2)  # does not fit: the open batch closes
    assert [(len(x), x.position) for x in closed] == [(2, 1)]
    closed = b.add([(2, 30, 5.0)], position=3)  # fills the batch exactly: it holds frame 3 whole
    assert [(len(x), x.position) for x in closed] == [(3, 3)]
    closed = b.add([(i, 40, 0.0) for i in range(4)], position=4)  # split: frame 4 is not whole
    assert [(len(x), x.position) for x in closed] == [(3, 3)]
    rest = b.flush()
    assert rest is not None
    assert (len(rest), rest.position) == (1, 4)


def test_batch_priority_is_the_highest_of_its_signals() -> None:
    b = Batcher(1, max_samples=10, priorities=[0, 5, 2])
    b.add([(0, 1, 0.0), (2, 1, 0.0)])
    first = b.flush()
    b.add([(1, 2, 0.0)])
    second = b.flush()
    assert first is not None
    assert second is not None
    assert (first.priority, second.priority) == (2, 5)


def test_drop_filters_the_open_batch() -> None:
    b = Batcher(1, max_samples=10)
    b.add([(0, 1, 1.0), (1, 1, 2.0), (0, 2, 3.0)])
    assert b.drop(frozenset({1})) == 1
    kept = b.flush()
    assert kept is not None
    assert (list(kept.signal_index), list(kept.value)) == ([0, 0], [1.0, 3.0])
    b.add([(1, 3, 4.0)])
    assert b.drop(frozenset({1})) == 1
    assert b.flush() is None


def test_add_pairs_equals_add_with_the_time_in_every_sample() -> None:
    frames = [[(i % 7, float(n * 10 + i)) for i in range(1 + n % 5)] for n in range(200)]
    by_triples = Batcher(1, max_samples=9, max_age=3600)
    by_pairs = Batcher(1, max_samples=9, max_age=3600)
    closed: list[list[Batch]] = [[], []]
    for position, pairs in enumerate(frames):
        ts = 1_000 * position
        closed[0] += by_triples.add([(i, ts, v) for i, v in pairs], position)
        closed[1] += by_pairs.add_pairs(ts, pairs, position)
    for batcher, batches in zip((by_triples, by_pairs), closed, strict=True):
        last = batcher.flush()
        if last is not None:
            batches.append(last)

    def columns(b: Batch) -> tuple[object, ...]:
        return (list(b.signal_index), list(b.timestamp_us), list(b.value), b.position)

    assert [columns(b) for b in closed[0]] == [columns(b) for b in closed[1]]
    assert len(closed[0]) > 10


def _column_frames(rng: random.Random, frames: int) -> list[list[tuple[int, int, float]]]:
    """Frames of 0 to 14 samples (some larger than a small batch)."""
    out: list[list[tuple[int, int, float]]] = []
    for f in range(frames):
        count = rng.choice((0, 0, 1, 2, 3, 5, 8, 14))
        out.append([(rng.randrange(20), 1_000 * f, rng.random()) for _ in range(count)])
    return out


def _state(batches: list[Batch], batcher: Batcher) -> list[tuple[object, ...]]:
    open_batch = batcher.flush()
    every = [*batches, *([open_batch] if open_batch is not None else [])]
    return [
        (list(b.signal_index), list(b.timestamp_us), list(b.value), b.position, b.priority)
        for b in every
    ]


@pytest.mark.parametrize("max_samples", [1, 4, 7, 50])
@pytest.mark.parametrize("seed", range(6))
def test_add_columns_equals_add_frame_by_frame(max_samples: int, seed: int) -> None:
    rng = random.Random(seed)
    frames = _column_frames(rng, 300)
    priorities = [rng.randrange(3) for _ in range(20)]
    one = Batcher(7, max_samples=max_samples, clock=lambda: 0.0, priorities=priorities)
    by_frame: list[Batch] = []
    for position, samples in enumerate(frames, start=100):
        by_frame.extend(one.add(samples, position))
    two = Batcher(7, max_samples=max_samples, clock=lambda: 0.0, priorities=priorities)
    by_columns: list[Batch] = []
    # In uneven pieces, as chunks and the segments between per-frame rows come.
    start = 0
    while start < len(frames):
        size = rng.randrange(1, 60)
        piece = frames[start : start + size]
        rows = [r for r, samples in enumerate(piece) for _ in samples]
        flat = [s for samples in piece for s in samples]
        by_columns.extend(
            two.add_columns(
                100 + start,
                len(piece),
                np.array(rows, dtype=np.intp),
                np.array([s[0] for s in flat], dtype=np.uint32),
                np.array([s[1] for s in flat], dtype=np.int64),
                np.array([s[2] for s in flat], dtype=np.float64),
            )
        )
        start += size
    assert _state(by_columns, two) == _state(by_frame, one)
    assert len(by_frame) > 1
