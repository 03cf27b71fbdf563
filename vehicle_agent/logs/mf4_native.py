"""Native reader for MDF 4 bus logging files (``.mf4``): python-can's frames without asammdf.

:mod:`vehicle_agent.logs.mf4` asks asammdf for a group's records block by block,
and asammdf's per-channel machinery then costs most of the reading time. This
reader parses the blocks itself (:mod:`~vehicle_agent.logs.mf4_blocks`), reads a
group's records a block at a time into numpy records and builds its frames with
the very function the asammdf path uses
(:func:`~vehicle_agent.logs.mf4_frames.frame_columns`): the same groups, names,
defaults, ``DataBytes[:DataLength]``, timestamps, merge of several groups and
chunks as python-can (``mf4.py``'s docstring lists them).

What it reproduces of asammdf, for the layouts it accepts
(:mod:`~vehicle_agent.logs.mf4_layout` says which):

- Timestamps: the master's raw values times ``a`` and plus ``b`` (when not 0)
  of its linear conversion, computed by numpy in the raw dtype as asammdf
  does, as float64, plus the header's start time from the same ``datetime``
  calls as asammdf's.
- A component: asammdf's unsigned container (1, 2, 4 or 8 bytes from its byte
  offset), shifted by the bit offset and masked to the bit count.
- A VLSD byte array (CANedge's data bytes): each record's sample, zero-padded
  to the longest sample of the group. That length only matters for a
  ``DataLength`` beyond a record's own sample and beyond every sample seen
  so far: only then is it found, by a second pass over the group.
- A sorted group's ``cycles`` records (asammdf cuts a DT block's data there).
  Unsorted data groups of unfinished files (CANedge's raw layout) are finalised
  and split by record id as asammdf does (:mod:`~vehicle_agent.logs.mf4_unsorted`).

What it does not reproduce raises :class:`Unsupported` before the first chunk
(:func:`read` then hands the file to the asammdf reader), among others data
blocks holding fewer or more bytes than a sorted group's announced records. A
damaged file raises :class:`LogFormatError`, a file cut short among them (a
block past its end; python-can fails on those too, but for an unfinished file,
whose data runs to the end of the file whatever its length).

Memory: per group a block of records (:data:`BLOCK_RECORDS`, or a chunk when
larger), one data block (a DZ block inflated whole, stored blocks read in
pieces of a block of records) and the signal data those records use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.logs.mf4_blocks import (
    PIECE,
    BlockFile,
    ChannelGroup,
    Corrupt,
    DataGroup,
    DataStream,
    data_groups,
    extents,
    start_fields,
)
from vehicle_agent.logs.mf4_frames import (
    WORD_KEEP,
    Group,
    Layout,
    check_mergeable,
    cut_payload,
    frame_columns,
    keep,
    merge,
    rechunk,
)
from vehicle_agent.logs.mf4_layout import SPARE, Block, Bytes, Plan, Samples, frame_kind, layout

__all__ = ["BLOCK_RECORDS", "read", "read_native"]

LOG = logging.getLogger(__name__)

#: Records read per block of a group (a chunk's worth when that is more).
BLOCK_RECORDS = 65_536

_MAGICS = (b"MDF     ", b"UnFinMF ")
_UNFIN_CYCLES, _UNFIN_DT_LENGTH, _UNFIN_VLSD_BYTES = 0x1, 0x4, 0x20


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the MF4 file at *path*, as python-can reads them, in chunks.

    Read natively, or for a layout this reader declines by the asammdf reader
    (:mod:`vehicle_agent.logs.mf4`, which may decline too: :class:`Unsupported`
    before the first chunk, and python-can reads the file).
    """
    chunks = read_native(path, chunk_frames)
    try:
        first = next(chunks)
    except StopIteration:
        return
    except Unsupported as exc:
        LOG.debug("%s read through asammdf: %s", path, exc)
        from vehicle_agent.logs import mf4  # asammdf: imported when needed only

        yield from mf4.read(path, chunk_frames)
        return
    yield first
    yield from chunks


def read_native(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the MF4 file at *path*, read natively; Unsupported for other layouts."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise LogFormatError(path, "header", f"{type(exc).__name__}: {exc}") from exc
    with file:
        try:
            blocks = BlockFile(file, os.fstat(file.fileno()).st_size)
            yield from _read(path, blocks, chunk_frames)
        except Corrupt as exc:
            raise LogFormatError(path, *exc.args) from exc
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise SourceError(f"cannot read log file {str(path)!r}: {reason}") from exc


def _read(path: Path, blocks: BlockFile, chunk_frames: int) -> Iterator[FrameColumns]:
    identification = blocks.read(0, 64, "identification block") if blocks.size >= 64 else b""
    if identification[:8] not in _MAGICS:
        raise Corrupt("header", "not an MDF file")
    version = identification[8:16].decode("ascii", "replace").strip(" \n\t\r\0")
    if not "4.00" <= version < "4.20":
        raise Unsupported(f"MDF version {version}")
    unfinished = int.from_bytes(identification[60:62], "little") if version >= "4.10" else 0
    if unfinished & ~(_UNFIN_CYCLES | _UNFIN_DT_LENGTH | _UNFIN_VLSD_BYTES):
        raise Unsupported(f"unfinished file (flags {unfinished:#x})")
    first_group, header_time = start_fields(blocks)
    start = _start_time(*header_time)
    per_block = max(BLOCK_RECORDS, chunk_frames)
    plans = _plans(blocks, data_groups(blocks, first_group), unfinished, per_block)
    # Every group's first block is read (and checked) before the first chunk
    # leaves, so that Unsupported can still hand the file over.
    groups: list[Group] = []
    firsts: list[FrameColumns] = []
    streams: list[Iterator[FrameColumns]] = []
    for plan in plans:
        rows = _group_rows(plan, start)
        try:
            first = next(rows, None)
        except Layout as exc:
            raise Unsupported(f"channel group {plan.index}: {exc}") from exc
        if first is not None:  # a group without frames: python-can skips it
            groups.append(Group(plan.index, plan.kind, plan.cycles))
            firsts.append(first)
            streams.append(rows)
    if len(groups) > 1:
        for group, first in zip(groups, firsts, strict=True):
            check_mergeable(path, group, first.timestamp, 0)
    yield from rechunk(merge(path, groups, firsts, streams), chunk_frames)


def _start_time(ns: int, tz_offset: int, dst: int, time_flags: int) -> float:
    """asammdf's ``header.start_time.timestamp()``, by the same calls."""
    timestamp = ns / 10**9
    local = bool(time_flags & 1)
    try:
        zone = UTC if local else timezone(timedelta(minutes=tz_offset + dst))
        try:
            moment = datetime.fromtimestamp(timestamp, zone)
            if local:
                moment = moment.replace(tzinfo=None)
        except OverflowError:
            moment = datetime.fromtimestamp(0, zone) + timedelta(seconds=timestamp)
        return moment.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise Corrupt("header", f"start time out of range: {exc}") from exc


def _plans(
    blocks: BlockFile, groups: list[DataGroup], unfinished: int, per_block: int
) -> list[Plan]:
    """The frame groups python-can reads, in its order, each with its reading plan."""
    from vehicle_agent.logs import mf4_unsorted  # the unsorted layout's own module

    plans: list[Plan] = []
    index = 0
    for data_group in groups:
        candidates = [
            (index + i, group, kind)
            for i, group in enumerate(data_group.groups)
            if (kind := frame_kind(group)) is not None
        ]
        index += len(data_group.groups)
        if data_group.record_id_size:
            if candidates:
                found = mf4_unsorted.plans(blocks, data_group, candidates, unfinished, per_block)
                plans.extend(found)
            continue
        if len(data_group.groups) > 1:
            raise Unsupported(f"data group at byte {data_group.at}: groups without record ids")
        if candidates:
            plan = _sorted_plan(blocks, data_group, *candidates[0], unfinished, per_block)
            if plan is not None:
                plans.append(plan)
    return plans


def _sorted_plan(
    blocks: BlockFile,
    data_group: DataGroup,
    index: int,
    group: ChannelGroup,
    kind: str,
    unfinished: int,
    per_block: int,
) -> Plan | None:
    """A sorted group's plan, or None when python-can skips it (no records)."""
    from vehicle_agent.logs import mf4_unsorted

    parts = extents(blocks, data_group.data, b"DT") if data_group.data else []
    if unfinished & _UNFIN_DT_LENGTH and parts:
        parts = mf4_unsorted.finished_extents(blocks, data_group)
    available = sum(part.size for part in parts)
    record_size = group.data_bytes + group.invalidation_bytes
    cycles = group.cycles
    if unfinished & _UNFIN_CYCLES:  # asammdf counts the records the data holds
        cycles = available // record_size if record_size else 0
    if cycles == 0:
        return None
    limit = cycles * record_size
    if available < limit:
        raise Unsupported(f"channel group {index}: {available} data bytes for {cycles} records")
    # asammdf cuts a DT block at the announced records, but a DZ block past them
    # leaves the blocks after it to its block limits: not reproduced.
    held = 0
    for part in parts:
        if held >= limit and part.size:
            raise Unsupported(f"channel group {index}: data blocks past its announced records")
        held += part.size
    plan = layout(index, group, kind, cycles)
    dtype = plan.dtype()

    def records() -> Iterator[npt.NDArray[np.void]]:
        data = DataStream(blocks, parts, limit)
        carried = np.empty(0, dtype=np.uint8)  # a record cut by the end of a buffer
        while True:
            buffer = np.empty(per_block * record_size, dtype=np.uint8)
            buffer[: len(carried)] = carried
            count = data.read_into(buffer[len(carried) :])
            if not count:
                return
            held = len(carried) + count
            whole = held // record_size * record_size
            if whole:
                yield np.frombuffer(buffer[:whole], dtype=dtype)
            carried = buffer[whole:held].copy()

    if plan.payload != "vlsd":
        plan.blocks = lambda: (Block(records) for records in records())
        return plan
    data_bytes = next(c for c in group.walk() if c.name == f"{kind}.DataBytes")
    if not data_bytes.data:
        raise Corrupt(f"byte {data_bytes.at}", "VLSD channel without signal data")
    sd_parts = extents(blocks, data_bytes.data, b"SD")
    sd_size = sum(part.size for part in sd_parts)

    def vlsd_blocks() -> Iterator[Block]:
        signal = _SignalData(DataStream(blocks, sd_parts, sd_size), sd_size)
        for rows in records():
            offsets = rows["payload"].astype(np.uint64)
            yield Block(rows, signal.samples(offsets))

    plan.blocks = vlsd_blocks
    return plan


class _SignalData:
    """A sorted group's VLSD signal data, read forward from its SD blocks as records need it.

    It holds the data from the lowest offset still needed on: records must ask
    for their samples in order (offsets never going back).
    """

    def __init__(self, data: DataStream, size: int) -> None:
        self._stream = data
        self._size = size
        self._data = Bytes(np.zeros(SPARE, dtype=np.uint8))
        self._low = 0  # the data offset of the buffer's first byte
        self._end = 0  # the data offset after the last byte held

    def _fill(self, end: int, keep: int) -> None:
        """Read on until the data up to *end* is held, forgetting what is before *keep*.

        The data is read a piece (:data:`PIECE` bytes) at least at a time, into a
        new buffer after the bytes kept.
        """
        if end <= self._end:
            return
        held = self._data.buffer[keep - self._low : self._end - self._low]
        wanted = max(end - self._end, min(PIECE, self._size - self._end))
        buffer = np.empty(len(held) + wanted + SPARE, dtype=np.uint8)
        buffer[: len(held)] = held
        count = self._stream.read_into(buffer[len(held) : len(held) + wanted])
        buffer[len(held) + count :] = 0
        self._end += count
        self._data = Bytes(buffer)
        self._low = keep
        if self._end < end:
            raise Corrupt("signal data", f"signal data ends at byte {self._end}, before {end}")

    def samples(self, offsets: npt.NDArray[np.uint64]) -> Samples:
        """Where the samples at *offsets* are; Corrupt for offsets going back or past the data."""
        if not len(offsets):
            return Samples(self._data, np.empty(0, dtype=np.intp), np.empty(0, dtype=np.uint32))
        first, last = int(offsets[0]), int(offsets[-1])
        if first < self._low or (offsets[1:] < offsets[:-1]).any():
            raise Corrupt("signal data", f"VLSD offsets go backwards (offset {first})")
        if last + 4 > self._size:
            raise Corrupt("signal data", f"VLSD offset {last} past the end of the signal data")
        self._fill(last + 4, first)
        at = offsets.view(np.int64)  # below 2**63: checked against the data's size
        heads = at - self._low
        lengths = self._data.u32[heads]
        end = int((at + lengths).max()) + 4
        if end > self._size:
            raise Corrupt("signal data", "a VLSD sample runs past the end of the signal data")
        if end > self._end:
            self._fill(end, first)
            heads = at - self._low
        return Samples(self._data, heads, lengths)


class _Longest:
    """The longest VLSD sample of a group (asammdf's padding), found only when it matters."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self.seen = 0  # the longest sample seen so far: the longest is at least that
        self._known: int | None = None

    def width(self, beyond: npt.NDArray[Any]) -> int:
        """A width that clips the lengths *beyond* their samples as the longest sample does."""
        most = int(beyond.max()) if beyond.size else 0
        if most <= self.seen:
            return self.seen
        if self._known is None:
            lengths = (block.samples.lengths for block in self._plan.blocks() if block.samples)
            self._known = max((int(found.max()) for found in lengths if found.size), default=0)
        return self._known


def _group_rows(plan: Plan, start: float) -> Iterator[FrameColumns]:
    """One frame group's frames, block by block, in record order.

    Raises :class:`Layout` from the first block only; a later block python-can
    could read but this reader cannot is a damaged file here.
    """
    longest = _Longest(plan)
    position = 0
    for block in plan.blocks():
        if not len(block.records):
            continue
        try:
            yield _columns(plan, block, longest, start)
        except Layout as exc:
            if not position:
                raise
            where = f"channel group {plan.index}, record {position}"
            raise Corrupt(where, str(exc)) from exc
        position += len(block.records)


class _Components(Mapping[str, npt.NDArray[Any]]):
    """A block's component values by name, each computed when asked for.

    Components sharing a container (CANedge packs ten into three) copy it out
    of the records once.
    """

    def __init__(self, plan: Plan, records: npt.NDArray[np.void]) -> None:
        self._plan = plan
        self._records = records
        self._names = [*plan.fields, *(["DataBytes"] if plan.payload else [])]
        self._containers: dict[tuple[int, str], npt.NDArray[Any]] = {}

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        field = self._plan.fields[name]
        key = (field.byte_offset, field.dtype)
        raw = self._containers.get(key)
        if raw is None:
            raw = self._containers[key] = np.ascontiguousarray(self._records[name])
        return field.values(raw)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _columns(plan: Plan, block: Block, longest: _Longest, start: float) -> FrameColumns:
    records, samples = block.records, block.samples

    def payload(
        declared: npt.NDArray[Any],
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        if samples is None:
            raw: npt.NDArray[np.uint8] = records["payload"]
            return cut_payload(declared, plan.width, lambda k, kept: keep(raw[:, :k], kept))
        lengths = samples.lengths
        longest.seen = max(longest.seen, int(lengths.max()))
        width = longest.width(declared[declared > lengths])
        rows = partial(_rows, samples.data, samples.heads + 4)
        return cut_payload(declared, width, rows, lengths)

    timestamp = plan.time.seconds(records) + start
    return frame_columns(plan.kind, _Components(plan, records), timestamp, payload)


def _rows(
    data: Bytes, starts: npt.NDArray[np.intp], width: int, kept: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint8]:
    """The first *width* bytes at each of *starts*, zeroed from ``kept[i]`` on, by 8-byte words."""
    words = -(-width // 8)
    at = starts[:, None] + 8 * np.arange(words) if words > 1 else starts[:, None]
    rows = data.v64[at].view("<u8") & WORD_KEEP[kept, :words]
    out: npt.NDArray[np.uint8] = rows.view(np.uint8)[:, :width]
    return out
