"""What a benchmark feeds the agent: a log file in the format under test, and a plan.

:func:`prepare_log` writes the frames of a recording into a temporary log of the
format both sides of a comparison read (python-can's writer for the suffix), so
that the reader measured is that format's and not the source's: the bundled
recording is an MF4 file, and python-can's MF4 reader alone reads only ~41k
frames/s here. :func:`typical_plan` is the realistic plan ``--plan typical``
pushes for the bundled recording.

``telehub bench decode`` needs the same frames in several formats and a million
of them: :func:`load_recording` reads a recording once into columns,
:func:`write_log` replays it into any format, and :func:`write_mf4` writes MF4
directly in the layout CAN loggers (CANedge) write, hundreds of times faster
than python-can's MF4 writer (1M frames in well under a second).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import can
import numpy as np
import numpy.typing as npt

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent.errors import SourceError
from vehicle_agent.logs import FrameColumns, read_columns
from vehicle_agent.logs.columns import (
    BRS,
    ERROR,
    ESI,
    EXTENDED,
    FD,
    REMOTE,
    RX,
    concat,
    select,
)

__all__ = [
    "FORMATS",
    "TYPICAL_PLAN_DOC",
    "PreparedLog",
    "Recording",
    "WorkloadError",
    "load_recording",
    "prepare_log",
    "replay_passes",
    "typical_plan",
    "write_log",
    "write_mf4",
]

#: Formats a comparison may read, by the name the CLI takes (the file suffix).
FORMATS = ("blf", "asc", "log", "mf4")


class WorkloadError(Exception):
    """The recording cannot be turned into the benchmark's log (message says why)."""


@dataclass(frozen=True, slots=True)
class PreparedLog:
    """The log both sides read: ``converted`` is False when it is the source itself."""

    path: Path
    frames: int
    converted: bool


def prepare_log(source: Path, fmt: str, folder: Path, frames: int | None = None) -> PreparedLog:
    """The log of format *fmt* holding *frames* frames of *source* (all when None).

    When *frames* exceeds the recording, it is replayed again from its start with
    the timestamps shifted by its duration, so time keeps moving forward. The
    source is used as it is when it already has the format and no limit is asked.
    """
    if fmt not in FORMATS:
        raise WorkloadError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if frames is not None and frames < 1:
        raise WorkloadError(f"--frames must be at least 1, got {frames}")
    if source.suffix.lower() == f".{fmt}" and frames is None:
        return PreparedLog(source, _count(source), converted=False)
    target = folder / f"{source.stem}.{fmt}"
    written = 0
    try:
        with can.Logger(str(target)) as writer:
            for msg in _frames(source, frames):
                writer.on_message_received(msg)
                written += 1
    except (OSError, ValueError, can.CanError) as exc:
        raise WorkloadError(f"cannot convert {source} to {fmt}: {exc}") from exc
    if written == 0:
        raise WorkloadError(f"{source} holds no frames")
    return PreparedLog(target, written, converted=True)


def _frames(source: Path, limit: int | None) -> Iterator[can.Message]:
    shift = 0.0
    given = 0
    while True:
        first = last = None
        in_pass = 0
        with can.LogReader(str(source)) as reader:
            for msg in reader:
                if limit is not None and given >= limit:
                    return
                first = msg.timestamp if first is None else first
                last = msg.timestamp
                if shift:
                    msg.timestamp += shift
                yield msg
                given += 1
                in_pass += 1
        if limit is None or first is None or last is None:
            return
        # The next pass starts one mean frame gap after this one's last frame.
        duration = last - first
        shift += duration + duration / max(in_pass - 1, 1)


def _count(path: Path) -> int:
    with can.LogReader(str(path)) as reader:
        return sum(1 for _ in reader)


#: What ``--plan typical`` runs, for the help text and the JSON output.
TYPICAL_PLAN_DOC = (
    "plan 'bench-typical' v1: Speed (0.1 m/s), Heading (1 deg), Altitude (1 m), "
    "AccelerationX/Y (0.5 m/s^2), Satellites, FixType and DistanceTotal on change with "
    "those deadbands and a 10 s heartbeat on Speed; trigger 'hard_braking' when "
    "AccelerationX < -4 (rising edge, at most every 10 s) captures Speed and "
    "AccelerationX 2 s before to 2 s after; all for diagnostics (location is not consented)"
)

# (signal, deadband): sent when they moved by more than the deadband.
_ON_CHANGE = (
    ("Speed", 0.1),
    ("Heading", 1.0),
    ("Altitude", 1.0),
    ("AccelerationX", 0.5),
    ("AccelerationY", 0.5),
    ("Satellites", 0.0),
    ("FixType", 0.0),
    ("DistanceTotal", 0.0),
)


def typical_plan() -> pb.CollectionPlan:
    """A realistic plan for the bundled drive recording's DBC (see :data:`TYPICAL_PLAN_DOC`)."""
    plan = pb.CollectionPlan(version=1, name="bench-typical")
    for name, deadband in _ON_CHANGE:
        plan.signals.add(
            signal=pb.SignalRef(name=name),
            purpose=pb.PURPOSE_DIAGNOSTICS,
            mode=pb.SAMPLING_MODE_ON_CHANGE,
            deadband=deadband,
            heartbeat_ms=10_000 if name == "Speed" else 0,
        )
    plan.triggers.add(
        name="hard_braking",
        condition="AccelerationX < -4",
        mode=pb.TRIGGER_MODE_RISING_EDGE,
        min_interval_ms=10_000,
        pre_ms=2_000,
        post_ms=2_000,
        capture=[pb.SignalRef(name="Speed"), pb.SignalRef(name="AccelerationX")],
        purpose=pb.PURPOSE_DIAGNOSTICS,
    )
    return plan


# --- Recordings in columns, replayed into any format (``telehub bench decode``) ---------


@dataclass(frozen=True, slots=True)
class Recording:
    """The data frames of a recording in columns, what :func:`write_log` replays.

    Remote and error frames carry no signals and are left out (``skipped``
    counts them), so every log written from one recording holds exactly the
    same frames.
    """

    frames: FrameColumns
    skipped: int

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def timestamps(self) -> npt.NDArray[np.float64]:
        return self.frames.timestamp

    def flag(self, bit: int) -> npt.NDArray[np.bool_]:
        """Whether each frame has the :mod:`vehicle_agent.logs.columns` flag *bit*."""
        return np.bitwise_and(self.frames.flags, np.uint8(bit)).astype(np.bool_)

    def channels(self) -> list[int | str | None]:
        """python-can's channel of each frame."""
        table = self.frames.channels
        return [table[code] for code in self.frames.channel.tolist()]


def load_recording(source: Path, limit: int | None = None) -> Recording:
    """The data frames of *source* (its first *limit* ones), as python-can reads them.

    Read through :func:`vehicle_agent.logs.read_columns`, whose fast readers give
    python-can's frames exactly.
    """
    if limit is not None and limit < 1:
        raise WorkloadError(f"--frames must be at least 1, got {limit}")
    chunks: list[FrameColumns] = []
    frames = skipped = 0
    try:
        for chunk in read_columns(source):
            data_frames = (chunk.flags & (REMOTE | ERROR)) == 0
            skipped += len(chunk) - int(data_frames.sum())
            keep = np.flatnonzero(data_frames)[: None if limit is None else limit - frames]
            chunks.append(select(chunk, keep))
            frames += len(chunks[-1])
            if limit is not None and frames >= limit:
                break
    except SourceError as exc:
        raise WorkloadError(f"cannot read {source}: {exc}") from exc
    if not frames:
        raise WorkloadError(f"{source} holds no data frames")
    return Recording(concat(chunks), skipped)


def replay_passes(recording: Recording, frames: int) -> Iterator[tuple[int, float]]:
    """``(count, shift)`` per pass over *recording* until *frames* frames are given.

    A pass replays the recording's first ``count`` frames with ``shift`` added to
    their timestamps; as in :func:`prepare_log`, each pass starts one mean frame gap
    after the previous one's last frame, so time keeps moving forward.
    """
    n = len(recording)
    duration = float(recording.timestamps[-1] - recording.timestamps[0])
    step = duration + duration / max(n - 1, 1)
    shift = 0.0
    left = frames
    while left > 0:
        count = min(n, left)
        yield count, shift
        left -= count
        shift += step


def write_log(recording: Recording, fmt: str, path: Path, frames: int) -> int:
    """Write *frames* frames of *recording* (replayed as needed) to *path*; returns the count.

    MF4 goes through :func:`write_mf4`; every other format through python-can's
    writer for the suffix (``fmt`` is the suffix: ``blf``, ``asc``, ``log``).
    """
    if frames < 1:
        raise WorkloadError(f"--frames must be at least 1, got {frames}")
    if fmt == "mf4":
        return write_mf4(recording, path, frames)
    if fmt not in FORMATS:
        raise WorkloadError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    written = 0
    try:
        with can.Logger(str(path)) as writer:
            for count, shift in replay_passes(recording, frames):
                one_pass = recording.frames
                shifted = (
                    dataclasses.replace(one_pass, timestamp=one_pass.timestamp + shift)
                    if shift
                    else one_pass
                )
                for msg in shifted.messages()[:count]:
                    writer.on_message_received(msg)
                written += count
    except (OSError, ValueError, can.CanError) as exc:
        raise WorkloadError(f"cannot write {path}: {exc}") from exc
    return written


# The record of a CAN_DataFrame in CANedge's MF4 layout (ASAM MDF 4.11 bus logging):
# 8 bytes of time, then ID, IDE and BusChannel packed in 4 bytes, Dir and DataLength
# in one, EDL, BRS, ESI and DLC in one, and the offset of the payload in the SD block.
_RECORD = np.dtype(
    {
        "names": ["time", "ident", "dir_length", "fd_dlc", "payload"],
        "formats": ["<f8", "<u4", "u1", "u1", "<u8"],
        "offsets": [0, 8, 12, 13, 14],
        "itemsize": 22,
    }
)
_MF4_CHUNK = 65_536
_UINT_LE, _FLOAT_LE, _BYTES = 0, 4, 10  # cn_data_type
_VALUE, _VLSD, _MASTER = 0, 1, 2  # cn_type
_CN_BUS_EVENT = 0x400
_CG_BUS_EVENT = 0x2 | 0x4  # bus event, plain bus event
# (name, cn_type, data type, byte offset, bit offset, bit count) of the composition.
_FIELDS = (
    ("BusChannel", _VALUE, _UINT_LE, 8, 1, 2),
    ("ID", _VALUE, _UINT_LE, 8, 3, 29),
    ("IDE", _VALUE, _UINT_LE, 8, 0, 1),
    ("DLC", _VALUE, _UINT_LE, 13, 4, 4),
    ("DataLength", _VALUE, _UINT_LE, 12, 1, 7),
    ("DataBytes", _VLSD, _BYTES, 14, 0, 64),
    ("Dir", _VALUE, _UINT_LE, 12, 0, 1),
    ("EDL", _VALUE, _UINT_LE, 13, 0, 1),
    ("ESI", _VALUE, _UINT_LE, 13, 2, 1),
    ("BRS", _VALUE, _UINT_LE, 13, 1, 1),
)
_HD_AT = 64
_HD_SIZE = 104


def write_mf4(
    recording: Recording, path: Path, frames: int, progress: Callable[[int], None] | None = None
) -> int:
    """Write *frames* frames of *recording* as an MF4 file laid out as CANedge's.

    python-can's MF4 writer manages ~4.5k frames/s (1M frames would take minutes)
    and asammdf's ``append`` writes a byte-aligned group with a fixed 64-byte
    payload, not the layout loggers write. This writes the blocks directly, with
    numpy: one sorted data group, one ``CAN_DataFrame`` channel group with the
    fields of the CANedge recordings (bit for bit the same record layout, the
    payload in a VLSD signal data block), time in float64 seconds since the
    header's start (a whole second chosen so that python-can and asammdf read
    every timestamp back exactly). Remote and error frames are not written.
    *progress* is called with the frames written so far.
    """
    if frames < 1:
        raise WorkloadError(f"--frames must be at least 1, got {frames}")
    channels = [can.util.channel2int(c) for c in recording.channels()]
    frame = recording.frames
    fd = recording.flag(FD)
    if any(c is not None and not 0 <= c <= 3 for c in channels):
        raise WorkloadError("the MF4 layout has 2 bits for the bus channel; channels are 0-3")
    passes = list(replay_passes(recording, frames))
    start = _start_second(recording.timestamps, [shift for _, shift in passes])
    n = len(recording)
    # One pass's payloads as the VLSD signal data: a uint32 length before each.
    lengths = frame.length.astype(np.uint64)
    entry_end = np.cumsum(lengths + 4)
    entry_start = entry_end - (lengths + 4)
    signal_data = _signal_data(recording, entry_start, int(entry_end[-1]))
    base = np.zeros(n, dtype=_RECORD)
    base["ident"] = (
        frame.arbitration_id.astype(np.uint32) << 3
        | np.array([c or 0 for c in channels], dtype=np.uint32) << 1
        | recording.flag(EXTENDED).astype(np.uint32)
    )
    base["dir_length"] = (frame.length << 1) | (~recording.flag(RX)).astype(np.uint8)
    codes = np.array([can.util.len2dlc(int(x)) for x in frame.length], dtype=np.uint8)
    dlc = np.where(fd, codes, frame.dlc & 0x0F)
    base["fd_dlc"] = (
        fd.astype(np.uint8)
        | recording.flag(BRS).astype(np.uint8) << 1
        | recording.flag(ESI).astype(np.uint8) << 2
        | dlc.astype(np.uint8) << 4
    )
    base["payload"] = entry_start
    sd_size = sum(int(entry_end[count - 1]) for count, _ in passes)
    try:
        with path.open("wb") as out:
            out.write(_identification() + bytes(_HD_SIZE))
            dt_at = out.tell()
            out.write(_header(b"##DT", [], 24 + frames * _RECORD.itemsize))
            pass_offset = done = 0
            for count, shift in passes:
                for lo in range(0, count, _MF4_CHUNK):
                    hi = min(lo + _MF4_CHUNK, count)
                    chunk = base[lo:hi].copy()
                    chunk["time"] = (recording.timestamps[lo:hi] + shift) - start
                    chunk["payload"] += np.uint64(pass_offset)
                    out.write(chunk.tobytes())
                    done += hi - lo
                    if progress is not None:
                        progress(done)
                pass_offset += int(entry_end[count - 1])
            _pad(out)
            sd_at = out.tell()
            out.write(_header(b"##SD", [], 24 + sd_size))
            for count, _ in passes:
                out.write(signal_data[: int(entry_end[count - 1])])
            _pad(out)
            blocks = _Blocks(out)
            dg_at, fh_at = _metadata(blocks, frames, dt_at, sd_at, start)
            out.seek(_HD_AT)
            out.write(_header(b"##HD", [dg_at, fh_at, 0, 0, 0, 0], _HD_SIZE))
            out.write(struct.pack("<QhhBBBBdd", start * 10**9, 0, 0, 0, 0, 0, 0, 0.0, 0.0))
    except OSError as exc:
        raise WorkloadError(f"cannot write {path}: {exc}") from exc
    return frames


def _start_second(stamps: npt.NDArray[np.float64], shifts: list[float]) -> int:
    """The header's start: a whole second t0 with t0 <= t <= 2 t0 for every timestamp.

    Then ``t - t0`` is exact (Sterbenz) and adding t0 back gives ``t`` bit for bit;
    logs with relative timestamps start at 0, which is exact too.
    """
    low = float(stamps.min()) + min(shifts)
    high = float(stamps.max()) + max(shifts)
    second = math.floor(low) if low >= 1 else 0
    return second if second and high <= 2 * second else 0


def _signal_data(recording: Recording, entry_start: npt.NDArray[np.uint64], size: int) -> bytes:
    out = np.zeros(size, dtype=np.uint8)
    width = recording.frames.data.shape[1]
    for lo in range(0, len(recording), _MF4_CHUNK):
        hi = min(lo + _MF4_CHUNK, len(recording))
        at = entry_start[lo:hi].astype(np.int64)[:, None]
        sizes = recording.frames.length[lo:hi].astype("<u4")
        out[at + np.arange(4)] = sizes.view(np.uint8).reshape(-1, 4)
        mask = np.arange(width) < sizes[:, None]
        out[(at + 4 + np.arange(width))[mask]] = recording.frames.data[lo:hi][mask]
    return out.tobytes()


def _identification() -> bytes:
    return b"MDF     4.11    telehub " + bytes(4) + struct.pack("<H", 411) + bytes(34)


def _header(kind: bytes, links: list[int], length: int) -> bytes:
    return struct.pack(f"<4s4xQQ{len(links)}Q", kind, length, len(links), *links)


def _pad(out: BinaryIO) -> None:
    out.write(bytes(-out.tell() % 8))


class _Blocks:
    """Appends 8-byte aligned MDF blocks to a file and returns their addresses."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def add(self, kind: bytes, links: list[int], data: bytes) -> int:
        at = self._out.tell()
        self._out.write(_header(kind, links, 24 + 8 * len(links) + len(data)) + data)
        _pad(self._out)
        return at

    def text(self, value: str, kind: bytes = b"##TX") -> int:
        return self.add(kind, [], value.encode() + b"\0")

    def channel(
        self,
        name: int,
        kind: int,
        dtype: int,
        at: tuple[int, int, int],
        *,
        flags: int = _CN_BUS_EVENT,
        following: int = 0,
        composition: int = 0,
        data: int = 0,
        sync: int = 0,
    ) -> int:
        byte_offset, bit_offset, bits = at
        fields = struct.pack(
            "<BBBBIIIIBBH6d", kind, sync, dtype, bit_offset, byte_offset, bits, flags, 0, 0, 0, 0,
            *([0.0] * 6),
        )  # fmt: skip
        return self.add(b"##CN", [following, composition, name, 0, 0, data, 0, 0], fields)


def _metadata(blocks: _Blocks, frames: int, dt_at: int, sd_at: int, start: int) -> tuple[int, int]:
    """Channels, channel group, data group and file history; returns (DG, FH) addresses."""
    following = 0
    for name, kind, dtype, byte_offset, bit_offset, bits in reversed(_FIELDS):
        following = blocks.channel(
            blocks.text(f"CAN_DataFrame.{name}"),
            kind,
            dtype,
            (byte_offset, bit_offset, bits),
            following=following,
            data=sd_at if kind == _VLSD else 0,
        )
    group_name = blocks.text("CAN_DataFrame")
    frame = blocks.channel(group_name, _VALUE, _BYTES, (8, 0, 112), composition=following)
    time = blocks.channel(
        blocks.text("Timestamp"), _MASTER, _FLOAT_LE, (0, 0, 64),
        flags=0, following=frame, sync=1,
    )  # fmt: skip
    bus = blocks.text("CAN")
    source = blocks.add(b"##SI", [bus, bus, 0], struct.pack("<BBB5x", 2, 2, 0))  # bus, CAN
    group = blocks.add(
        b"##CG",
        [0, time, group_name, source, 0, 0],
        struct.pack("<QQHH4xII", 1, frames, _CG_BUS_EVENT, ord("."), _RECORD.itemsize, 0),
    )
    dg = blocks.add(b"##DG", [0, group, dt_at, 0], bytes(8))
    comment = blocks.text(
        "<FHcomment><TX>telehub bench: frames replayed from a recording</TX>"
        "<tool_id>telehub</tool_id><tool_vendor>telehub</tool_vendor>"
        "<tool_version>bench</tool_version></FHcomment>",
        kind=b"##MD",
    )
    fh = blocks.add(b"##FH", [0, comment], struct.pack("<QhhB3x", start * 10**9, 0, 0, 0))
    return dg, fh
