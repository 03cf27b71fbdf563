"""Where the records of an unsorted MDF 4 data block start, found with numpy.

In an unsorted data group every record starts with its channel group's record
id (one byte here), and its length follows from the id: a fixed size, or for a
VLSD group a u32 length and that many bytes. asammdf's ``sort_data_block``
finds the records by walking from the first byte, one record after the other;
:func:`split` finds the same ones without a Python step per record:

1. The data is cut into segments; a cursor per segment starts a little before
   it and steps from record to record, all cursors at once (numpy operations
   on the array of cursors). A cursor meeting an unknown id or an incomplete
   record notes it and goes on from the next byte.
2. The true records enter a segment where the previous segment's cursor left
   it. A cursor that passed through that record is right from there on, up to
   the first odd record it noted after it: there the true records stop. A
   cursor that did not (it started at a wrong byte and never fell into step,
   for instance on a regular pattern of records) is run again from that
   record, again all such cursors at once, until every segment up to the end
   of the true records is right.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.mf4_layout import Bytes

__all__ = ["DEAD", "END", "LIMIT", "split", "walk"]

#: How the records stop: at an unknown record id (asammdf drops the rest of the
#: piece), at an incomplete record (carried over to the next piece), or they run
#: past the end of a segment (only inside :func:`split`).
LIMIT, END, DEAD = 0, 1, 2

_SEGMENT = 2048  # bytes of data per cursor
_LEAD = 256  # bytes a cursor starts before its segment
_FEW = 16  # cursors run again one record at a time rather than all at once
_Found = npt.NDArray[np.int32]
_Index = npt.NDArray[np.intp]


def split(data: Bytes, end: int, sizes: npt.NDArray[np.int64]) -> tuple[_Index, int, int]:
    """Where the records of ``data.buffer[:end]`` start, where they stop, and how.

    *sizes* gives by record id the bytes a record takes (its id included), 0
    for a VLSD record (its u32 length plus 4, kept to 32 bits as asammdf's C
    code keeps it, then that many bytes), -1 for an unknown id. An id needs a
    byte after it. The records are those asammdf finds walking from byte 0.
    """
    segments = max(1, -(-end // _SEGMENT))
    limit = (np.arange(segments, dtype=np.intp) + 1) * _SEGMENT
    limit[-1] = end + 1  # the last cursor runs to the end of the data
    shortest = int(min((s for s in sizes.tolist() if s > 0), default=5))
    steps = (_SEGMENT + _LEAD) // min(shortest, 5) + 2
    starts = np.maximum(limit - _SEGMENT - _LEAD, 0)
    starts[0] = 0
    run = _Run(data, end, sizes, steps)
    found, leave, odd = run(starts, limit)
    events = _Events(np.arange(segments), *odd)
    entry = np.concatenate([[0], leave[:-1]])
    right = (found == entry[:, None]).any(axis=1) & (leave >= 0)
    right[0] = leave[0] >= 0  # it starts where the records do
    stop_at, how = events.first_after(np.arange(segments), entry)
    while True:
        stops = np.flatnonzero(how != LIMIT)
        last = int(stops[0]) if stops.size else segments - 1
        wrong = np.flatnonzero(~right[: last + 1])
        if not wrong.size:
            break
        # Run again from their entry the wrong cursors whose previous cursor is right:
        # a few one record at a time, more all at once.
        ready = wrong[(wrong == 0) | right[np.maximum(wrong - 1, 0)]]
        if len(ready) > _FEW:
            rerun, leave[ready], again = run(entry[ready], limit[ready])
            found = _widen(found, rerun.shape[1])
            found[ready] = -1
            found[ready, : rerun.shape[1]] = rerun
            events.replace(ready, again)
            stop_at[ready], how[ready] = events.first_after(ready, entry[ready])
        walking = ready if len(ready) <= _FEW else ready[leave[ready] < 0]
        for row in walking:  # (all at once, out of steps on tiny records)
            walked, stopped, stop_how = walk(data, end, sizes, int(entry[row]), int(limit[row]))
            found = _widen(found, len(walked))
            found[row] = -1
            found[row, : len(walked)] = walked
            leave[row] = stopped
            stop_at[row], how[row] = (stopped, stop_how) if stop_how != LIMIT else (-1, LIMIT)
        right[ready] = True
        following = ready[ready + 1 < segments] + 1
        entry[following] = leave[following - 1]
        right[following] = (found[following] == entry[following, None]).any(axis=1) & (
            leave[following] >= 0
        )
        stop_at[following], how[following] = events.first_after(following, entry[following])
    rows = found[: last + 1]
    upto = np.where(how[: last + 1] != LIMIT, stop_at[: last + 1], limit[: last + 1])
    own = (rows >= entry[: last + 1, None]) & (rows < upto[:, None])
    starts_found = rows[own].astype(np.intp)
    if how[last] == LIMIT:  # cannot happen: the last cursor always meets the end
        return starts_found, end, END
    return starts_found, int(stop_at[last]), int(how[last])


class _Run:
    """Cursors stepping from record to record, all at once."""

    def __init__(self, data: Bytes, end: int, sizes: npt.NDArray[np.int64], steps: int) -> None:
        self._data, self._end, self._sizes, self._steps = data, end, sizes, steps

    def __call__(
        self, starts: _Index, limit: _Index
    ) -> tuple[_Found, _Index, tuple[_Index, _Index, npt.NDArray[np.int8]]]:
        """Each cursor's records, where it left its segment (-1: stopped early), its odd records.

        The records are a row per cursor, -1 after its last one; the odd records
        are (cursor, where, END or DEAD), in the order met.
        """
        buffer, u32, end, sizes = self._data.buffer, self._data.u32, self._end, self._sizes
        count = len(starts)
        found = np.full((self._steps, count), -1, dtype=np.int32)
        leave = np.full(count, -1, dtype=np.intp)
        odd_rows: list[_Index] = [np.empty(0, dtype=np.intp)]
        odd_at: list[_Index] = [np.empty(0, dtype=np.intp)]
        odd_how: list[npt.NDArray[np.int8]] = [np.empty(0, dtype=np.int8)]
        active = np.arange(count, dtype=np.intp)
        at, bound = starts.astype(np.intp), limit.astype(np.intp)
        used = 0
        for used in range(1, self._steps + 1):
            size = sizes[buffer[at]]
            variable = np.flatnonzero(size == 0)
            if variable.size:
                # The length plus 4 kept to 32 bits; past the end it reads the spare
                # zeros, and the record is incomplete all the same.
                lengths = u32[at[variable] + 1] + np.uint32(4)
                size[variable] = lengths.astype(np.intp) + 1
            after = at + size
            odd = (size < 0) | (after > end)
            if odd.any():
                which = np.flatnonzero(odd)
                odd_rows.append(active[which])
                odd_at.append(at[which])
                dead = (size[which] < 0) & (at[which] + 1 < end)
                odd_how.append(np.where(dead, DEAD, END).astype(np.int8))
                after[which] = at[which] + 1
                found[used - 1, active[~odd]] = at[~odd]
            else:
                found[used - 1, active] = at
            done = after >= bound
            if done.any():
                leave[active[done]] = after[done]
                keep = ~done
                active, at, bound = active[keep], after[keep], bound[keep]
                # The last few cursors (skipping through bytes that are no records)
                # are left out of steps: they are run again if the records need them.
                if len(active) <= count // 64:
                    break
            else:
                at = after
        odd_found = (np.concatenate(odd_rows), np.concatenate(odd_at), np.concatenate(odd_how))
        return found[:used].T, leave, odd_found


def _widen(found: _Found, width: int) -> _Found:
    """*found* with room for *width* records a row."""
    if width <= found.shape[1]:
        return found
    wider = np.full((found.shape[0], width), -1, dtype=found.dtype)
    wider[:, : found.shape[1]] = found
    return wider


class _Events:
    """The odd records each segment's cursor met, in order, by segment."""

    def __init__(
        self,
        segments: _Index,
        rows: _Index,
        at: _Index,
        how: npt.NDArray[np.int8],
    ) -> None:
        self._rows = segments[rows]
        self._at, self._how = at, how
        self._sort()

    def _sort(self) -> None:
        order = np.argsort(self._rows, kind="stable")  # each cursor's stay in the order met
        self._rows, self._at, self._how = self._rows[order], self._at[order], self._how[order]

    def replace(self, segments: _Index, odd: tuple[_Index, _Index, npt.NDArray[np.int8]]) -> None:
        """The odd records of *segments*' cursors, run again, instead of their first ones."""
        kept = ~np.isin(self._rows, segments)
        rows, at, how = odd
        self._rows = np.concatenate([self._rows[kept], segments[rows]])
        self._at = np.concatenate([self._at[kept], at])
        self._how = np.concatenate([self._how[kept], how])
        self._sort()

    def first_after(self, segments: _Index, entry: _Index) -> tuple[_Index, npt.NDArray[np.int8]]:
        """Each segment's first odd record at or after *entry*: where (-1: none) and how."""
        high = np.searchsorted(self._rows, segments, side="right")
        # Along a cursor the positions grow: skip its odd records before the entry.
        key = self._rows.astype(np.int64) << 40 | self._at
        index = np.searchsorted(key, segments.astype(np.int64) << 40 | entry, side="left")
        has = index < high
        where = np.full(len(segments), -1, dtype=np.intp)
        how = np.full(len(segments), LIMIT, dtype=np.int8)
        where[has] = self._at[index[has]]
        how[has] = self._how[index[has]]
        return where, how


def walk(
    data: Bytes, end: int, sizes: npt.NDArray[np.int64], at: int, limit: int
) -> tuple[list[int], int, int]:
    """The records from *at* up to *limit*, one at a time: where they start, stop, and how."""
    buffer = data.buffer
    walked: list[int] = []
    while at < limit:
        if at + 1 >= end:
            return walked, at, END
        size = int(sizes[buffer[at]])
        if size < 0:
            return walked, at, DEAD
        if size == 0:
            if at + 5 > end:
                return walked, at, END
            size = 1 + ((int(data.u32[at + 1]) + 4) & 0xFFFFFFFF)
        if at + size > end:
            return walked, at, END
        walked.append(at)
        at += size
    return walked, at, LIMIT
