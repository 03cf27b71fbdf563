"""Unfinished MDF 4 files with an unsorted data group (CANedge's raw layout), as asammdf reads them.

A CANedge logger writes one data group whose records start with a one-byte
record id: the frame groups' records and those of a VLSD channel group (a
frame's data bytes: a u32 length, then the bytes) interleaved in time order,
in one DT block. It leaves the DT block's length and the groups' record counts
for a finaliser (the identification block's "unfinished" flags). asammdf
finalises such a file when it opens it and then sorts the records by id; this
module does the same, with numpy, reproducing:

- The DT block's length (:func:`finished_extents`): up to the next block
  asammdf's scan finds after it (an 8-byte aligned ``##XX`` block id of a kind
  it knows, or a standard DG header), or the end of the file.
- The sort: the DT data read in asammdf's pieces (4 MiB of whole records of the
  data group's last channel group), the incomplete record at the end of a piece
  carried over to the next; a record of an unknown id ends a piece (asammdf
  drops the rest of it); an incomplete record at the end of the data is dropped.
- A group's record count: what the sort finds (the "update cycle counters" flag).
- A VLSD sample: at its offset in the VLSD group's records laid end to end.

The records of a piece are found without a Python step per record, by
:func:`vehicle_agent.logs.mf4_split.split`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.mf4_blocks import (
    BlockFile,
    ChannelGroup,
    Corrupt,
    DataGroup,
    Extent,
    extents,
)
from vehicle_agent.logs.mf4_layout import SPARE, Block, Bytes, Plan, Samples, layout
from vehicle_agent.logs.mf4_split import END, split

__all__ = ["finished_extents", "plans"]

# asammdf's scan for block ids when it finalises a file (utils.all_blocks_addresses).
_BLOCK_ID = re.compile(
    rb"##(?:DG\0{4}@\0{7}\x04\0{7}"
    rb"|(?:D[VTZIL]|AT|C[AGHNC]|EV|FH|HL|LD|MD|R[DVI]|S[IRD]|TX|GD)\0{4})",
    re.DOTALL,
)
_DG_HEADER = b"##DG" + bytes(4) + (64).to_bytes(8, "little") + (4).to_bytes(8, "little")
_SCAN = 4 << 20
_UNFIN_CYCLES, _UNFIN_DT_LENGTH = 0x1, 0x4
_CG_VLSD, _CG_REMOTE_MASTER = 0x1, 0x8
_READ_CHUNK = 4 << 20  # asammdf's pieces of a DT block: this many bytes of whole records

_LONGEST_CARRY = 64 << 20  # an incomplete record longer than this is damage, not data
# Bytes of record positions kept from the first pass (which counts the records
# of each group) for the next: files of up to ~2M frames are split once.
_KEPT_SPLIT = 16 << 20


def finished_extents(blocks: BlockFile, data_group: DataGroup) -> list[Extent]:
    """The data group's DT block as asammdf finalises it: up to the next block it finds."""
    if blocks.read(data_group.at, len(_DG_HEADER), "DG block") != _DG_HEADER:
        raise Unsupported(f"unfinished file: DG block at byte {data_group.at} of another form")
    at = data_group.data
    kind, _, links = blocks.header(at)
    if kind != b"##DT" or links:
        raise Unsupported(f"unfinished file whose data group holds a {kind!r} block")
    length = _next_block(blocks, at) - at
    if length < 24:
        raise Corrupt(f"byte {at}", "DT block overlaps the next block")
    return [Extent(at + 24, length - 24, length - 24)] if length > 24 else []


def _next_block(blocks: BlockFile, at: int) -> int:
    """The first address after *at* where asammdf's scan finds a block, or the file's end."""
    position = at + 8
    while position < blocks.size:
        chunk = blocks.read(position, min(_SCAN + 23, blocks.size - position), "file")
        for match in _BLOCK_ID.finditer(chunk):
            found = position + match.start()
            if found >= position + _SCAN:
                break
            if found % 8 == 0:
                return found
        position += _SCAN
    return blocks.size


def plans(
    blocks: BlockFile,
    data_group: DataGroup,
    candidates: list[tuple[int, ChannelGroup, str]],
    unfinished: int,
    per_block: int,
) -> list[Plan]:
    """The plans of an unsorted data group's frame groups that hold records."""
    where = f"data group at byte {data_group.at}"
    if data_group.record_id_size != 1:
        raise Unsupported(f"{where}: record ids of {data_group.record_id_size} bytes")
    if not unfinished & _UNFIN_CYCLES:
        raise Unsupported(f"{where}: unsorted in a finished file")
    if not data_group.data:
        return []
    if unfinished & _UNFIN_DT_LENGTH:
        parts = finished_extents(blocks, data_group)
    else:
        parts = extents(blocks, data_group.data, b"DT")
    if len(parts) > 1 or any(part.zip_type is not None for part in parts):
        raise Unsupported(f"{where}: unsorted data in several or compressed blocks")
    if not parts:
        return []
    sizes: dict[int, int] = {}
    for group in data_group.groups:
        if group.record_id in sizes:
            raise Unsupported(f"{where}: record id {group.record_id} used twice")
        vlsd = group.flags & _CG_VLSD
        sizes[group.record_id] = 0 if vlsd else group.data_bytes + group.invalidation_bytes
    last = data_group.groups[-1]
    if last.flags & _CG_REMOTE_MASTER:
        raise Unsupported(f"{where}: a remote master channel group")
    record_size = last.data_bytes + last.invalidation_bytes
    splitter = _Splitter(blocks, parts[0], record_size, sizes)
    counts = splitter.counts()
    found: list[Plan] = []
    for index, group, kind in candidates:
        cycles = int(counts[group.record_id]) if group.record_id < 256 else 0
        if not cycles:
            continue  # python-can skips a group without records
        plan = layout(index, group, kind, cycles)
        vlsd_id = _vlsd_id(data_group, group, kind) if plan.payload == "vlsd" else None
        plan.blocks = _Blocks(splitter, plan, group.record_id, vlsd_id, per_block)
        found.append(plan)
    return found


def _vlsd_id(data_group: DataGroup, group: ChannelGroup, kind: str) -> int:
    """The record id of the VLSD channel group holding the group's data bytes."""
    data_bytes = next(c for c in group.walk() if c.name == f"{kind}.DataBytes")
    for other in data_group.groups:
        if other.at == data_bytes.data and other.flags & _CG_VLSD:
            return other.record_id
    raise Unsupported(f"{kind}.DataBytes of an unsorted group not in a VLSD channel group")


@dataclass(frozen=True, slots=True)
class _Piece:
    """One of asammdf's pieces of the DT data (with what was carried over) and its records."""

    data: Bytes
    starts: npt.NDArray[np.intp]  # where each record (its id) starts in data.buffer
    ids: npt.NDArray[np.uint8]


class _Splitter:
    """An unsorted DT block's records, split as asammdf's sort does, a piece at a time."""

    def __init__(
        self, blocks: BlockFile, part: Extent, last_record: int, sizes: dict[int, int]
    ) -> None:
        self._blocks = blocks
        self._part = part
        # asammdf reads the DT block in pieces of whole records of the data group's last group.
        if last_record > _READ_CHUNK:
            self._piece = last_record
        elif last_record:
            self._piece = _READ_CHUNK // last_record * last_record
        else:
            self._piece = _READ_CHUNK
        # Bytes a record takes, record id included, by id: 0 for a VLSD record, -1 unknown.
        self._sizes = np.full(256, -1, dtype=np.int64)
        for record_id, size in sizes.items():
            if record_id < 256:
                self._sizes[record_id] = 1 + size if size else 0
        # The split of the first pieces, kept (up to _KEPT_SPLIT bytes) for the next pass.
        self._kept: dict[int, tuple[npt.NDArray[np.int32], int, int]] = {}
        self._kept_bytes = 0

    def counts(self) -> npt.NDArray[np.int64]:
        """The records of each id."""
        counts = np.zeros(256, dtype=np.int64)
        for piece in self.pieces():
            counts += np.bincount(piece.ids, minlength=256)
        return counts

    def pieces(self) -> Iterator[_Piece]:
        """The pieces in order, each with its records (the same on every pass)."""
        carried = np.empty(0, dtype=np.uint8)
        for number, at in enumerate(range(0, self._part.size, self._piece)):
            size = min(self._piece, self._part.size - at)
            buffer = np.zeros(len(carried) + size + SPARE, dtype=np.uint8)
            buffer[: len(carried)] = carried
            self._blocks.readinto(self._part.at + at, buffer[len(carried) : len(carried) + size])
            data = Bytes(buffer)
            end = len(carried) + size
            kept = self._kept.get(number)
            if kept is None:
                starts, stop, how = split(data, end, self._sizes)
                if self._kept_bytes + 4 * len(starts) <= _KEPT_SPLIT:
                    self._kept[number] = (starts.astype(np.int32), stop, how)
                    self._kept_bytes += 4 * len(starts)
            else:
                starts, stop, how = kept[0].astype(np.intp), kept[1], kept[2]
            yield _Piece(data, starts, buffer[starts])
            # An incomplete record goes on with the next piece; after an unknown id,
            # asammdf starts the next piece afresh.
            carried = buffer[stop:end].copy() if how == END else np.empty(0, dtype=np.uint8)
            if len(carried) > _LONGEST_CARRY:
                raise Corrupt(f"byte {self._part.at + at}", "a record of more than 64 MiB")


class _Blocks:
    """A frame group's blocks from an unsorted data group: its records, their samples."""

    def __init__(
        self, splitter: _Splitter, plan: Plan, record_id: int, vlsd_id: int | None, per_block: int
    ) -> None:
        self._splitter = splitter
        self._plan = plan
        self._id = record_id
        self._vlsd_id = vlsd_id
        self._most_pending = 4 * per_block
        self._words = -(-plan.size // 8)
        self._dtype = plan.dtype(8 * self._words)

    def __call__(self) -> Iterator[Block]:
        held: npt.NDArray[np.void] | None = None
        previous: _VlsdIndex | None = None
        stream_end = 0
        for piece in self._splitter.pieces():
            records = self._records(piece)
            if self._vlsd_id is None:
                yield Block(records)
                continue
            current = _VlsdIndex(piece, self._vlsd_id, stream_end)
            stream_end = current.end
            if held is not None and len(held):
                records = np.concatenate([held, records])
            offsets = records["payload"].astype(np.uint64)
            if (offsets[1:] < offsets[:-1]).any():
                raise Corrupt("signal data", "VLSD offsets go backwards")
            for index in (previous, current):
                if index is None:
                    continue
                count = int(np.searchsorted(offsets, np.uint64(index.end)))
                if count:
                    yield Block(records[:count], index.samples(offsets[:count]))
                    records, offsets = records[count:], offsets[count:]
            held, previous = records, current
            if len(held) > self._most_pending:
                raise Corrupt("signal data", "VLSD samples far behind their records")
        if held is not None and len(held):
            raise Corrupt("signal data", f"VLSD sample at offset {int(held['payload'][0])} missing")

    def _records(self, piece: _Piece) -> npt.NDArray[np.void]:
        """The group's records in *piece*, read as 8-byte words (the buffer ends in spare bytes)."""
        heads = piece.starts[piece.ids == self._id] + 1
        if 8 * self._words > SPARE:
            rows = np.lib.stride_tricks.sliding_window_view(piece.data.buffer, 8 * self._words)
            raw = np.ascontiguousarray(rows[heads])
        else:
            at = heads[:, None] + 8 * np.arange(self._words) if self._words > 1 else heads[:, None]
            raw = np.ascontiguousarray(piece.data.v64[at])
        records: npt.NDArray[np.void] = raw.view(self._dtype)[:, 0]
        return records


class _VlsdIndex:
    """The VLSD records of a piece: where each is and at what offset of the laid-out samples."""

    def __init__(self, piece: _Piece, vlsd_id: int, start: int) -> None:
        self.data = piece.data
        self.heads = piece.starts[piece.ids == vlsd_id] + 1
        self.lengths = self.data.u32[self.heads]
        # A record is its length and that many bytes: length + 4 kept to 32 bits.
        sizes = (self.lengths + np.uint32(4)).astype(np.uint64)
        self.offsets = np.cumsum(sizes) - sizes + np.uint64(start)
        self.end = start + int(sizes.sum())

    def samples(self, offsets: npt.NDArray[np.uint64]) -> Samples:
        """Where the samples at *offsets* are; Corrupt for an offset where none starts."""
        found = np.searchsorted(self.offsets, offsets)
        if len(self.offsets):
            hit = self.offsets[np.minimum(found, len(self.offsets) - 1)] == offsets
        else:
            hit = np.zeros(len(offsets), dtype=bool)
        if not hit.all():
            bad = int(offsets[np.argmin(hit)])
            raise Corrupt("signal data", f"VLSD offset {bad} is not where a sample starts")
        return Samples(self.data, self.heads[found], self.lengths[found])
