"""Fast reader for ASAM MDF 4 bus logging files (``.mf4``): python-can's frames, vectorised.

python-can's ``MF4Reader`` asks asammdf for 1000 records of a channel group at
a time and then builds one ``can.Message`` per record in Python, which makes it
the slowest of python-can's readers. This module makes the same asammdf calls
(``MDF.get`` of the group's structure channel, ``raw=False``, at the same record
offsets, only more records per call) and turns the returned arrays into
:class:`FrameColumns` with numpy, so every value (timestamps included) comes
from the very arithmetic python-can's messages come from.

Layout facts it relies on, all taken from python-can 4.6's reader:

- Frames live in channel groups flagged as bus events, with a CAN bus source,
  whose structure channel is ``CAN_DataFrame``, ``CAN_ErrorFrame`` or
  ``CAN_RemoteFrame`` (checked in that order); its components are named
  ``<structure>.ID``, ``.IDE``, ``.DLC``, ``.DataLength``, ``.DataBytes``,
  ``.BusChannel``, ``.Dir`` (a number, 0 for received, or the text ``Rx``),
  ``.EDL``, ``.BRS``, ``.ESI`` (``.RTR`` for error frames). Other groups (LIN,
  FlexRay, plain signals) are skipped, as python-can skips them.
- A frame's timestamp is ``float(group time) + header start time``.
- python-can merges the groups with ``heapq.merge`` keyed by timestamp, ties to
  the earlier group. Such a merge of sequences that are not sorted themselves
  equals a stable sort of all frames by (running maximum of its group's
  timestamps, group): a frame below its group's running maximum leaves right
  after the frame that set the maximum. That is what :func:`_merge` computes,
  a block at a time.

What it does not reproduce raises :class:`Unsupported` before the first chunk
(python-can then reads the file): MDF 3 files, structure channels with
invalidation bits (asammdf then drops records and python-can fails on a block
left empty), components of other types than python-can's ``int()``/``bool()``
read exactly, missing mandatory components. A NaN timestamp while several
groups are merged raises :class:`LogFormatError`: ``heapq`` orders NaN
inconsistently.

Memory: the reader holds about a chunk per channel group, and asammdf reads
its data blocks (at most 32 MB each once it has sorted the file). What asammdf
would otherwise hold in proportion to the file is avoided: it is given the
open file, not its path (with a path it maps the file into memory, and every
page it reads stays in the process's resident set); it is not asked for its
bus logging summary (every record's ID and bus channel, read on opening); the
longest variable-length sample (for CANedge's data bytes), which it finds by
reading the whole group, is found here a block at a time; and an
uncompressed signal data block is handed to it in pieces (it reads the block
holding a block of records' first sample whole, and copies everything after
that sample: one large SD block made every call read all of it).
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from asammdf import MDF, Signal
from asammdf.blocks.cutils import get_vlsd_max_sample_size
from asammdf.blocks.mdf_v4 import MDF4
from asammdf.blocks.mdf_v4 import Group as GroupV4
from asammdf.blocks.source_utils import Source
from asammdf.blocks.utils import SignalDataBlockInfo
from asammdf.blocks.v4_constants import (
    CHANNEL_TYPE_VLSD,
    DT_BLOCK,
    FLAG_CG_BUS_EVENT,
    FLAG_CN_ALL_INVALID,
    FLAG_CN_INVALIDATION_PRESENT,
)

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.columns import (
    BRS,
    ERROR,
    ESI,
    EXTENDED,
    FD,
    REMOTE,
    RX,
    Channel,
    FrameColumns,
    concat,
)
from vehicle_agent.logs.generic import READ_ERRORS

__all__ = ["read"]

#: Records python-can's reader asks asammdf for per call; our calls start on
#: the same record offsets so that any block effect of asammdf is shared.
_PYTHON_CAN_BLOCK = 1000

#: Our calls ask for at least this many of python-can's blocks at once: the
#: per-call cost of asammdf dominates below that.
_MIN_BLOCKS_PER_CALL = 8

#: Bytes of an uncompressed signal data block asammdf is handed at a time.
SIGNAL_DATA_PIECE = 4 << 20

# READ_ERRORS includes isal's, with which asammdf inflates data blocks.
_READ_ERRORS: tuple[type[Exception], ...] = READ_ERRORS

_MDF_MAGICS = (b"MDF     ", b"UnFinMF ")
_ID_MASK = 0x1FFFFFFF
_KINDS = ("CAN_DataFrame", "CAN_ErrorFrame", "CAN_RemoteFrame")
_INTEGER = "uib"  # numpy kinds that python-can's int()/bool() read exactly


class _Layout(Exception):
    """A block's columns are not what this reader reproduces exactly."""


@dataclass(slots=True)
class _Group:
    index: int
    kind: str  # the structure channel's name, one of _KINDS
    cycles: int


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the MF4 file at *path*, as python-can reads them, in chunks."""
    with ExitStack() as resources:
        mdf = _open(path, resources)
        groups = _frame_groups(mdf)
        start = mdf.header.start_time.timestamp()
        per_call = _PYTHON_CAN_BLOCK * max(
            _MIN_BLOCKS_PER_CALL, math.ceil(chunk_frames / _PYTHON_CAN_BLOCK)
        )
        for group in groups:
            _split_signal_data(cast("MDF4", mdf._mdf), group)
            _tell_vlsd_lengths(cast("MDF4", mdf._mdf), path, group, per_call)
        streams = [_group_rows(mdf, path, group, start, per_call) for group in groups]
        # Every group's first block is read (and checked) before the first
        # chunk leaves, so that Unsupported can still hand the file over. A
        # group yields a first block or raises: python-can skips empty ones.
        firsts: list[FrameColumns] = []
        for group, stream in zip(groups, streams, strict=True):
            try:
                firsts.append(next(stream))
            except _Layout as exc:
                raise Unsupported(f"channel group {group.index}: {exc}") from exc
        if len(groups) > 1:
            for group, first in zip(groups, firsts, strict=True):
                _check_mergeable(path, group, first.timestamp, 0)
        ordered = _merge(path, groups, firsts, streams)
        yield from _rechunk(ordered, chunk_frames)


def _open(path: Path, resources: ExitStack) -> MDF:
    """The MDF object of *path*, closed (with its file) when *resources* close."""
    try:
        file = resources.enter_context(path.open("rb"))
        identification = file.read(64)
    except OSError as exc:
        raise LogFormatError(path, "header", f"{type(exc).__name__}: {exc}") from exc
    # asammdf reports a foreign file but then fails in its own destructor.
    if identification[:8] not in _MDF_MAGICS:
        raise LogFormatError(path, "header", "not an MDF file")
    # Given a path, asammdf maps the whole file into memory, and every page it
    # reads stays resident: the process would grow to the file's size. Given
    # an open file, it reads what it needs. It finishes an unfinished file
    # (CANedge's) by writing into it: that one gets a copy, as asammdf makes
    # one for a path, but an anonymous one, gone when closed.
    stream: io.BufferedIOBase = file
    try:
        if identification[:8] == b"UnFinMF " or identification[60:62] != bytes(2):
            stream = resources.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by it)
            file.seek(0)
            shutil.copyfileobj(file, stream)
            stream.seek(0)
    except OSError as exc:
        reason = f"cannot copy the unfinished file: {type(exc).__name__}: {exc}"
        raise SourceError(f"cannot read log file {str(path)!r}: {reason}") from exc
    try:
        # Its bus logging summary reads every record's ID and bus channel at once
        # (MDF's typed keywords omit the option).
        mdf = MDF(stream, process_bus_logging=False)  # type: ignore[call-arg]
    except _READ_ERRORS as exc:
        _close_half_built(exc)
        raise LogFormatError(path, "block structure", f"{type(exc).__name__}: {exc}") from exc
    resources.callback(mdf.close)
    if not mdf.version.startswith("4"):
        raise Unsupported(f"MDF version {mdf.version}")
    return mdf


def _close_half_built(exc: BaseException) -> None:
    """Close the MDF4 object that *exc* left half built, once and quietly.

    asammdf's ``MDF4.__init__`` deletes its ``_file`` attribute when it fails,
    so its ``__del__`` then fails too (an unraisable AttributeError whenever the
    traceback is freed). Marking the object closed, after closing what it still
    holds, keeps the failure to the one error we raise.
    """
    traceback = exc.__traceback__
    while traceback is not None:
        candidate = traceback.tb_frame.f_locals.get("self")
        if isinstance(candidate, MDF4) and not getattr(candidate, "_closed", True):
            temporary = getattr(candidate, "_tempfile", None)
            if temporary is not None:
                temporary.close()
            if getattr(candidate, "_delete_on_close", False):  # its copy of an unfinished file
                Path(candidate.name).unlink(missing_ok=True)
            candidate._closed = True
        traceback = traceback.tb_next


def _frame_groups(mdf: MDF) -> list[_Group]:
    """The channel groups python-can reads frames from, in its order."""
    found: list[_Group] = []
    for index, group in enumerate(cast("list[GroupV4]", mdf.groups)):  # MDF 4: checked on opening
        channel_group = group.channel_group
        source = channel_group.acq_source
        if (
            not channel_group.flags & FLAG_CG_BUS_EVENT
            or channel_group.cycles_nr == 0
            or source is None
            or not source.source_type & Source.SOURCE_BUS
            or source.bus_type != Source.BUS_TYPE_CAN
        ):
            continue
        names = [channel.name for channel in group.channels]
        kind = next((k for k in _KINDS if k in names), None)
        if kind is None:
            continue
        structure = group.channels[names.index(kind)]
        # With invalidation bits asammdf drops invalid records from a block, and
        # python-can fails on a block left empty: not worth reproducing.
        if structure.flags & (FLAG_CN_ALL_INVALID | FLAG_CN_INVALIDATION_PRESENT):
            raise Unsupported(f"channel group {index}: {kind} has invalidation bits")
        found.append(_Group(index, kind, channel_group.cycles_nr))
    return found


def _split_signal_data(mdf4: MDF4, group: _Group) -> None:
    """Hand asammdf the group's uncompressed signal data blocks in pieces.

    For a block of records asammdf reads the signal data blocks from the one
    holding the first record's sample on, each whole, and copies all that
    follows that sample: with one large SD block (a valid layout, and what
    some writers produce) every call reads all of it, and time and memory
    grow with the file. Pieces of the same bytes, in the same order, give
    asammdf the same data for a piece's worth of reading.
    """
    try:
        signal_data = mdf4.groups[group.index].signal_data
        for index, blocks in enumerate(signal_data):
            if blocks:
                signal_data[index] = [piece for block in blocks for piece in _pieces(block)]
    except (AttributeError, TypeError):  # asammdf's internals changed: it reads them whole
        return


def _pieces(block: SignalDataBlockInfo) -> Iterator[SignalDataBlockInfo]:
    if block.block_type != DT_BLOCK or block.original_size <= SIGNAL_DATA_PIECE:
        yield block
        return
    for at in range(0, block.original_size, SIGNAL_DATA_PIECE):
        size = min(SIGNAL_DATA_PIECE, block.original_size - at)
        yield SignalDataBlockInfo(block.address + at, size, DT_BLOCK, location=block.location)


def _tell_vlsd_lengths(mdf4: MDF4, path: Path, group: _Group, per_call: int) -> None:
    """Find the longest sample of the group's VLSD components a block at a time.

    asammdf pads a VLSD byte array (CANedge's data bytes) to the longest sample
    of the whole group, which it finds on the first read by loading every
    sample of the group at once. Found here the way asammdf's
    ``get_vlsd_max_sample_size`` finds it (in record order, up to the first
    offset past the data) and handed over as its length hint, it is the same
    number for a block's worth of memory.
    """
    channels = mdf4.groups[group.index].channels
    names = [channel.name for channel in channels]
    dependencies = mdf4.groups[group.index].channel_dependencies[names.index(group.kind)] or []
    for dependency in dependencies:
        if not isinstance(dependency, tuple) or dependency[0] != group.index:
            continue
        index = dependency[1]
        channel = channels[index]
        key = (group.index, channel.name)
        if channel.channel_type != CHANNEL_TYPE_VLSD or key in mdf4.vlsd_max_length:
            continue
        try:
            longest = _longest_vlsd_sample(mdf4, path, group, index, per_call)
        except (AttributeError, TypeError):  # asammdf's internals changed: it finds it itself
            return
        mdf4.vlsd_max_length[key] = longest


def _longest_vlsd_sample(mdf4: MDF4, path: Path, group: _Group, index: int, per_call: int) -> int:
    data_group = mdf4.groups[group.index]
    channel = data_group.channels[index]
    longest = 0
    offset = 0
    while True:
        try:
            # The offsets into the signal data: what asammdf reads first, for all records.
            dependencies = data_group.channel_dependencies[index]
            offsets = mdf4._get_scalar(
                channel,
                data_group,
                group.index,
                index,
                dependencies,
                raster=None,
                data=None,
                ignore_invalidation_bits=True,
                record_offset=offset,
                record_count=per_call,
                master_is_required=False,
                skip_vlsd=True,
            )[0].astype(np.uint64)
            if not len(offsets):
                return longest
            first = int(offsets.min())
            samples = mdf4._load_signal_data(data_group, index, offsets=(first, int(offsets.max())))
        except _READ_ERRORS as exc:
            where = f"channel group {group.index}, record {offset}"
            raise LogFormatError(path, where, f"{type(exc).__name__}: {exc}") from exc
        relative = offsets - np.uint64(first)
        longest = max(longest, get_vlsd_max_sample_size(samples, relative, len(relative)))
        if len(offsets) < per_call or (relative >= len(samples)).any():
            return longest  # the last block, or asammdf stops at the first offset past the data
        offset += per_call


def _group_rows(
    mdf: MDF, path: Path, group: _Group, start: float, per_call: int
) -> Iterator[FrameColumns]:
    """One channel group's frames, block by block, in record order.

    Raises :class:`_Layout` from the first block only; later blocks that
    python-can could read but this reader cannot raise LogFormatError.
    """
    # python-can reads the records of ceil(cycles / 1000) blocks of 1000 (more
    # than the announced count when the data holds more): so do we.
    end = math.ceil(group.cycles / _PYTHON_CAN_BLOCK) * _PYTHON_CAN_BLOCK
    returned = 0
    for offset in range(0, end, per_call):
        where = f"channel group {group.index}, record {offset}"
        wanted = min(per_call, end - offset)
        try:
            signal = mdf.get(
                group.kind, group.index, record_offset=offset, record_count=wanted, raw=False
            )
        except _READ_ERRORS as exc:
            raise LogFormatError(path, where, f"{type(exc).__name__}: {exc}") from exc
        returned += len(signal)
        if len(signal) == 0:
            break
        try:
            rows = _columns(signal, group.kind, start)
        except _Layout as exc:
            if offset == 0:
                raise
            raise LogFormatError(path, where, str(exc)) from exc
        yield rows
        if len(signal) < wanted:
            break
    # python-can asks for every 1000 records up to the group's announced count
    # and fails on the first answer that is empty.
    last_block = (group.cycles - 1) // _PYTHON_CAN_BLOCK * _PYTHON_CAN_BLOCK
    if returned <= last_block:
        raise LogFormatError(
            path,
            f"channel group {group.index}, record {returned}",
            f"the group announces {group.cycles} records but holds {returned}",
        )


def _field(samples: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    values: npt.NDArray[Any] = samples[name]
    if values.ndim != 1 or values.dtype.kind not in _INTEGER:
        raise _Layout(f"{name} is {values.dtype} {values.shape[1:]}, not an integer")
    return values


def _columns(signal: Signal, kind: str, start: float) -> FrameColumns:
    """One asammdf block of a structure channel as columns, as python-can reads each record."""
    samples = signal.samples
    names: Sequence[str] = samples.dtype.names or ()
    if not names:
        raise _Layout(f"{kind} is not a structure")
    n = len(samples)
    times = np.asarray(signal.timestamps)
    if times.dtype.kind not in "uif":
        raise _Layout(f"time stamps are {times.dtype}")
    # python-can: float(time) + start, the same IEEE addition element by element.
    timestamp: npt.NDArray[np.float64] = times.astype(np.float64) + start

    def has(component: str) -> bool:
        return f"{kind}.{component}" in names

    def column(component: str) -> npt.NDArray[Any]:
        if not has(component):  # python-can would fail on the missing key
            raise _Layout(f"no {kind}.{component} channel")
        return _field(samples, f"{kind}.{component}")

    def truth(component: str, default: bool, read: bool = True) -> npt.NDArray[np.bool_]:
        # bool(x), or can.Message's default where python-can passes nothing.
        if not (read and has(component)):
            return np.full(n, default)
        return np.asarray(column(component) != 0)

    remote, error = kind == "CAN_RemoteFrame", kind == "CAN_ErrorFrame"
    flags = np.zeros(n, dtype=np.uint8)
    for bit, values in (
        (EXTENDED, truth("IDE", True)),
        (REMOTE, truth("RTR", remote, read=error)),
        (ERROR, np.full(n, error)),
        (FD, truth("EDL", False, read=not remote)),
        (BRS, truth("BRS", False, read=not remote)),
        (ESI, truth("ESI", False, read=not remote)),
        (RX, _received(samples, f"{kind}.Dir", n)),
    ):
        flags |= values.astype(np.uint8) * np.uint8(bit)

    if error and not has("ID"):
        arbitration_id = np.zeros(n, dtype=np.uint32)
    else:
        # int(x) & 0x1FFFFFFF: the low 29 bits survive the cast to int64.
        arbitration_id = (column("ID").astype(np.int64) & _ID_MASK).astype(np.uint32)

    if remote or (error and not (has("DataLength") and has("DataBytes"))):
        length = np.zeros(n, dtype=np.uint8)
        data = np.zeros((n, 0), dtype=np.uint8)
    else:
        length, data = _payload(samples, kind, column("DataLength"))
    if remote:
        dlc_values = column("DLC").astype(np.int64)
        if n and (dlc_values.min() < 0 or dlc_values.max() > 255):
            raise _Layout("a remote frame's DLC is outside 0..255")
        dlc = dlc_values.astype(np.uint8)
    else:
        dlc = length  # python-can passes no DLC: can.Message takes len(data)

    if has("BusChannel"):
        bus = column("BusChannel")
        values, codes = np.unique(
            bus.astype(np.int64) if bus.dtype.kind == "b" else bus, return_inverse=True
        )
        channels: list[Channel] = [int(v) for v in values.tolist()]
        channel = codes.astype(np.int32)
    else:
        channels = [None]
        channel = np.zeros(n, dtype=np.int32)
    return FrameColumns(timestamp, arbitration_id, flags, dlc, length, data, channel, channels)


def _received(samples: npt.NDArray[Any], name: str, n: int) -> npt.NDArray[np.bool_]:
    """python-can's is_rx: Dir is 0, or the text "Rx"; True without a Dir channel."""
    if name not in (samples.dtype.names or ()):
        return np.ones(n, dtype=bool)
    direction: npt.NDArray[Any] = samples[name]
    if direction.ndim == 1 and direction.dtype.kind == "S":  # a value-to-text conversion
        return np.asarray(direction == b"Rx")
    return np.asarray(_field(samples, name) == 0)


def _payload(
    samples: npt.NDArray[Any], kind: str, declared: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """``DataBytes[i][:DataLength[i]]`` for every record: lengths and zero-padded rows."""
    if f"{kind}.DataBytes" not in (samples.dtype.names or ()):
        raise _Layout(f"no {kind}.DataBytes channel")
    raw: npt.NDArray[Any] = samples[f"{kind}.DataBytes"]
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise _Layout(f"{kind}.DataBytes is {raw.dtype} {raw.shape[1:]}, not bytes")
    width = raw.shape[1]
    wanted = declared.astype(np.int64)
    # A Python slice [:k]: k clipped to the row, counted from its end when negative.
    sizes = np.where(wanted >= 0, np.minimum(wanted, width), np.maximum(wanted + width, 0))
    if width > 255 and sizes.size and sizes.max() > 255:
        raise _Layout(f"{kind} holds frames longer than 255 bytes")
    longest = int(sizes.max()) if sizes.size else 0
    data = raw[:, :longest].copy()  # a copy: asammdf's array stays as it was
    data[np.arange(longest) >= sizes[:, None]] = 0
    return sizes.astype(np.uint8), data


def _check_mergeable(
    path: Path, group: _Group, timestamp: npt.NDArray[np.float64], offset: int
) -> None:
    nan = np.flatnonzero(np.isnan(timestamp))
    if nan.size:
        raise LogFormatError(
            path,
            f"channel group {group.index}, frame {offset + int(nan[0])}",
            "NaN time stamp in a file whose frame groups must be merged by time",
        )


def _merge(
    path: Path,
    groups: list[_Group],
    firsts: list[FrameColumns],
    streams: list[Iterator[FrameColumns]],
) -> Iterator[FrameColumns]:
    """All groups' frames in python-can's ``heapq.merge`` order, block by block."""
    if len(groups) == 1:  # heapq.merge of one iterator compares nothing
        yield firsts[0]
        yield from streams[0]
        return
    count = len(groups)
    pending: list[FrameColumns | None] = list(firsts)
    keys: list[npt.NDArray[np.float64]] = [
        np.maximum.accumulate(first.timestamp) for first in firsts
    ]
    peak = [float(key[-1]) for key in keys]  # each group's running maximum so far
    seen = [len(first) for first in firsts]
    active = set(range(count))
    while True:
        # No frame still to come sorts before (running maximum, group) of any
        # group still being read; with none left, everything goes.
        bound_key, bound_group = min((peak[g], g) for g in active) if active else (math.inf, count)
        parts: list[FrameColumns] = []
        part_keys: list[npt.NDArray[np.float64]] = []
        for g, rows in enumerate(pending):
            if rows is None:
                continue
            key = keys[g]
            cut = int(np.searchsorted(key, bound_key, side="right" if g <= bound_group else "left"))
            if cut:
                parts.append(_take(rows, slice(0, cut)))
                part_keys.append(key[:cut])
            pending[g] = _take(rows, slice(cut, None)) if cut < len(rows) else None
            keys[g] = key[cut:]
        if parts:
            merged = concat(parts)
            yield _take(merged, np.argsort(np.concatenate(part_keys), kind="stable"))
        if not active:
            return
        # All the bound group's frames left: read its next block.
        try:
            block = next(streams[bound_group])
        except StopIteration:
            active.discard(bound_group)
            continue
        _check_mergeable(path, groups[bound_group], block.timestamp, seen[bound_group])
        seen[bound_group] += len(block)
        running = np.maximum(np.maximum.accumulate(block.timestamp), peak[bound_group])
        peak[bound_group] = float(running[-1])
        held = pending[bound_group]
        pending[bound_group] = block if held is None else concat([held, block])
        keys[bound_group] = np.concatenate([keys[bound_group], running])


def _rechunk(blocks: Iterator[FrameColumns], chunk_frames: int) -> Iterator[FrameColumns]:
    """Blocks regrouped into chunks of exactly *chunk_frames* frames (the last one fewer)."""
    position = 0
    held: list[FrameColumns] = []
    count = 0
    for block in blocks:
        if not len(block):
            continue
        held.append(block)
        count += len(block)
        if count < chunk_frames:
            continue
        rows = concat(held)
        cut = 0
        while len(rows) - cut >= chunk_frames:
            yield _chunk(_take(rows, slice(cut, cut + chunk_frames)), position)
            position += chunk_frames
            cut += chunk_frames
        held = [_take(rows, slice(cut, None))] if cut < len(rows) else []
        count = len(rows) - cut
    if count:
        yield _chunk(concat(held), position)


def _take(rows: FrameColumns, index: npt.NDArray[np.intp] | slice) -> FrameColumns:
    return FrameColumns(
        rows.timestamp[index],
        rows.arbitration_id[index],
        rows.flags[index],
        rows.dlc[index],
        rows.length[index],
        rows.data[index],
        rows.channel[index],
        rows.channels,
    )


def _chunk(rows: FrameColumns, position: int) -> FrameColumns:
    """*rows* as a chunk: its position, its own channels only, data no wider than its frames."""
    channels, channel = rows.channels, rows.channel
    used = np.bincount(channel, minlength=len(channels)) > 0
    if not used.all():
        channel = (np.cumsum(used, dtype=np.int32) - 1)[channel]
        channels = [c for c, u in zip(channels, used.tolist(), strict=True) if u]
    longest = int(rows.length.max()) if len(rows) else 0
    data = np.ascontiguousarray(rows.data[:, :longest])
    return replace(rows, data=data, channel=channel, channels=channels, first_position=position)
