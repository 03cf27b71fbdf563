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
  after the frame that set the maximum. That is what
  :func:`~vehicle_agent.logs.mf4_frames.merge` computes, a block at a time;
  the frames themselves come from the component values by
  :func:`~vehicle_agent.logs.mf4_frames.frame_columns`, shared with the native
  reader.

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
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.logs.generic import READ_ERRORS
from vehicle_agent.logs.mf4_frames import (
    KINDS,
    Group,
    Layout,
    check_mergeable,
    cut_payload,
    frame_columns,
    keep,
    merge,
    rechunk,
)

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
            except Layout as exc:
                raise Unsupported(f"channel group {group.index}: {exc}") from exc
        if len(groups) > 1:
            for group, first in zip(groups, firsts, strict=True):
                check_mergeable(path, group, first.timestamp, 0)
        ordered = merge(path, groups, firsts, streams)
        yield from rechunk(ordered, chunk_frames)


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


def _frame_groups(mdf: MDF) -> list[Group]:
    """The channel groups python-can reads frames from, in its order."""
    found: list[Group] = []
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
        kind = next((k for k in KINDS if k in names), None)
        if kind is None:
            continue
        structure = group.channels[names.index(kind)]
        # With invalidation bits asammdf drops invalid records from a block, and
        # python-can fails on a block left empty: not worth reproducing.
        if structure.flags & (FLAG_CN_ALL_INVALID | FLAG_CN_INVALIDATION_PRESENT):
            raise Unsupported(f"channel group {index}: {kind} has invalidation bits")
        found.append(Group(index, kind, channel_group.cycles_nr))
    return found


def _split_signal_data(mdf4: MDF4, group: Group) -> None:
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


def _tell_vlsd_lengths(mdf4: MDF4, path: Path, group: Group, per_call: int) -> None:
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


def _longest_vlsd_sample(mdf4: MDF4, path: Path, group: Group, index: int, per_call: int) -> int:
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
    mdf: MDF, path: Path, group: Group, start: float, per_call: int
) -> Iterator[FrameColumns]:
    """One channel group's frames, block by block, in record order.

    Raises :class:`Layout` from the first block only; later blocks that
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
        except Layout as exc:
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


def _columns(signal: Signal, kind: str, start: float) -> FrameColumns:
    """One asammdf block of a structure channel as columns, as python-can reads each record."""
    samples = signal.samples
    names: Sequence[str] = samples.dtype.names or ()
    if not names:
        raise Layout(f"{kind} is not a structure")
    times = np.asarray(signal.timestamps)
    if times.dtype.kind not in "uif":
        raise Layout(f"time stamps are {times.dtype}")
    # python-can: float(time) + start, the same IEEE addition element by element.
    timestamp: npt.NDArray[np.float64] = times.astype(np.float64) + start
    prefix = f"{kind}."
    components = {n.removeprefix(prefix): samples[n] for n in names if n.startswith(prefix)}

    def payload(
        declared: npt.NDArray[Any],
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        raw: npt.NDArray[Any] = components["DataBytes"]
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise Layout(f"{kind}.DataBytes is {raw.dtype} {raw.shape[1:]}, not bytes")
        return cut_payload(declared, raw.shape[1], lambda k, kept: keep(raw[:, :k], kept))

    return frame_columns(kind, components, timestamp, payload)
