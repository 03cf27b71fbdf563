"""candump and BLF logs of tens of millions of frames, byte for byte as python-can writes them.

python-can's writers build each line or object in Python (~100k frames/s), so a
log larger than 1 GB would take minutes to write. These writers replay a
:class:`~tools.bench.workload.Recording` as :func:`~tools.bench.workload.write_log`
does (passes with the time shifted), but what stays the same from pass to pass
is made once per recording (a candump line after its timestamp, by python-can's
own writer; a BLF object but its time) and only the times are formatted per
frame, with numpy. The files equal python-can's writers' byte for byte (tested).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import can
import numpy as np
import numpy.typing as npt
from can.io.blf import FILE_HEADER_SIZE, FILE_HEADER_STRUCT, BLFWriter, timestamp_to_systemtime

from tools.bench.workload import Recording, WorkloadError, replay_passes
from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX

__all__ = ["Progress", "write_blf", "write_candump"]

#: Called with the number of frames written so far.
Progress = Callable[[int], None]

_CHUNK = 65_536
_U8 = npt.NDArray[np.uint8]


def _check(recording: Recording, frames: int) -> None:
    if frames < 1:
        raise WorkloadError(f"--frames must be at least 1, got {frames}")
    if (recording.frames.flags & ERROR).any():
        raise WorkloadError("error frames cannot be replayed")


def _pass_stamps(recording: Recording, lo: int, hi: int, shift: float) -> npt.NDArray[np.float64]:
    stamps = recording.timestamps[lo:hi]
    return stamps + shift if shift else stamps  # as write_log shifts them


# --- candump ---------------------------------------------------------------------------


def write_candump(
    recording: Recording, path: Path, frames: int, progress: Progress | None = None
) -> int:
    """Write *frames* frames of *recording* (replayed as needed) as a candump ``.log``."""
    _check(recording, frames)
    tails = _candump_tails(recording)
    # python-can writes a time earlier than the first frame's as the first frame's.
    first = float(recording.timestamps[0]) or 0.0
    written = 0
    try:
        with path.open("wb") as out:
            for count, shift in replay_passes(recording, frames):
                for lo in range(0, count, _CHUNK):
                    hi = min(lo + _CHUNK, count)
                    stamps = _pass_stamps(recording, lo, hi, shift)
                    stamps = np.where(stamps < first, first, stamps)
                    lines = np.strings.add(
                        np.strings.add(np.strings.add(b"(", _seconds_text(stamps)), b")"),
                        tails[lo:hi],
                    )
                    raw = lines.view(np.uint8)
                    out.write(raw[raw != 0].tobytes())  # without the padding of the fixed width
                    written += hi - lo
                    if progress is not None:
                        progress(written)
    except OSError as exc:
        raise WorkloadError(f"cannot write {path}: {exc}") from exc
    return written


def _candump_tails(recording: Recording) -> npt.NDArray[np.bytes_]:
    """Each frame's line after its ``(timestamp)``, as python-can's writer writes it."""
    text = io.StringIO()
    writer = can.CanutilsLogWriter(text)
    timeless = dataclasses.replace(recording.frames, timestamp=np.zeros(len(recording)))
    for msg in timeless.messages():
        writer.on_message_received(msg)
    head = b"(0.000000)"
    lines = text.getvalue().encode().split(b"\n")[:-1]
    if len(lines) != len(recording) or not all(line.startswith(head) for line in lines):
        raise WorkloadError("python-can's candump writer wrote lines of another shape")
    return np.array([line[len(head) :] + b"\n" for line in lines])


def _seconds_text(stamps: npt.NDArray[np.float64]) -> npt.NDArray[np.bytes_]:
    """``f"{t:f}"`` of every time, as bytes.

    The fraction ``t - floor(t)`` is exact, and its microseconds are within
    1e-10 of exact: rounding them gives Python's correctly rounded six digits
    unless they are within 1e-6 of a half, which Python formats (as it does
    negative, huge and non-finite times).
    """
    odd = ~(np.isfinite(stamps) & (stamps >= 0) & (stamps < 2.0**53))
    plain = np.where(odd, 0.0, stamps)
    whole = np.floor(plain)
    micro = (plain - whole) * 1e6
    odd |= np.abs(micro - np.floor(micro) - 0.5) < 1e-6
    rounded = np.where(odd, 0.0, np.rint(micro))
    carry = rounded >= 1e6
    seconds = np.where(odd, 0.0, whole + carry).astype(np.int64)
    fraction = (np.where(carry, 0.0, rounded).astype(np.int64) + 1_000_000).astype("S7")
    digits = np.ascontiguousarray(fraction.view(np.uint8).reshape(-1, 7)[:, 1:]).view("S6")
    text = np.strings.add(np.strings.add(seconds.astype("S"), b"."), digits.ravel())
    if odd.any():
        exact = np.array([f"{t:f}".encode() for t in stamps[odd].tolist()])
        text = text.astype(f"S{max(text.itemsize, exact.itemsize)}")
        text[odd] = exact
    return text


# --- BLF -------------------------------------------------------------------------------

# A CAN_MESSAGE (1) and a CAN_FD_MESSAGE (100) object as python-can writes them: the
# object header (version 1, time in nanoseconds), then the record; (name, offset, type).
_Field = tuple[str, int, str]
_HEADER: list[_Field] = [
    ("signature", 0, "S4"), ("header_size", 4, "<u2"), ("version", 6, "<u2"),
    ("size", 8, "<u4"), ("type", 12, "<u4"), ("time_flags", 16, "<u4"), ("time", 24, "<u8"),
]  # fmt: skip


def _object(itemsize: int, record: list[_Field]) -> np.dtype[np.void]:
    fields = _HEADER + record
    return np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "offsets": [offset for _, offset, _ in fields],
            "formats": [kind for _, _, kind in fields],
            "itemsize": itemsize,
        }
    )


_CLASSIC = _object(48, [("channel", 32, "<u2"), ("flags", 34, "u1"), ("dlc", 35, "u1"),
                        ("ident", 36, "<u4"), ("data", 40, "(8,)u1")])  # fmt: skip
_FD_OBJECT = _object(116, [("channel", 32, "<u2"), ("flags", 34, "u1"), ("dlc", 35, "u1"),
                           ("ident", 36, "<u4"), ("fd_flags", 45, "u1"), ("valid", 46, "u1"),
                           ("data", 52, "(64,)u1")])  # fmt: skip
_CAN_MESSAGE, _CAN_FD_MESSAGE, _LOG_CONTAINER = 1, 100, 10
_TIME_ONE_NANS = 2
_OBJECT_HEADER = struct.Struct("<4sHHLL")
_CONTAINER_HEADER = struct.Struct("<H6xL4x")
_TIME_AT = 24


@dataclasses.dataclass(slots=True)
class _Containers:
    """The object stream cut into log containers as python-can cuts it, and their counts."""

    out: BinaryIO
    level: int
    pending: bytes = b""
    uncompressed: int = FILE_HEADER_SIZE

    def add(self, objects: bytes, final: bool = False) -> None:
        data = self.pending + objects
        size = BLFWriter.max_container_size
        full = len(data) if final else len(data) - len(data) % size
        for at in range(0, full, size):
            self._write(data[at : at + size])
        self.pending = data[full:]

    def _write(self, piece: bytes) -> None:
        stored = zlib.compress(piece, self.level) if self.level else piece
        size = _OBJECT_HEADER.size + _CONTAINER_HEADER.size + len(stored)
        self.out.write(_OBJECT_HEADER.pack(b"LOBJ", _OBJECT_HEADER.size, 1, size, _LOG_CONTAINER))
        self.out.write(_CONTAINER_HEADER.pack(2 if self.level else 0, len(piece)))
        self.out.write(stored + bytes(size % 4))
        self.uncompressed += _OBJECT_HEADER.size + _CONTAINER_HEADER.size + len(piece)


def write_blf(
    recording: Recording,
    path: Path,
    frames: int,
    progress: Progress | None = None,
    *,
    compression_level: int = -1,
) -> int:
    """Write *frames* frames of *recording* (replayed as needed) as BLF.

    *compression_level* is python-can's (zlib's; 0 stores the containers
    uncompressed; -1, the default, is zlib's default, level 6).
    """
    _check(recording, frames)
    objects, ends = _blf_objects(recording)
    time_at = ends - np.diff(ends, prepend=0) + _TIME_AT
    # python-can: the first frame's time truncated to milliseconds, the others after it.
    start = int(float(recording.timestamps[0]) * 1000) / 1000
    stop = start
    written = 0
    try:
        with path.open("wb") as out:
            out.write(bytes(FILE_HEADER_SIZE))  # written last, with the counts
            containers = _Containers(out, compression_level)
            for count, shift in replay_passes(recording, frames):
                for lo in range(0, count, _CHUNK):
                    hi = min(lo + _CHUNK, count)
                    stamps = _pass_stamps(recording, lo, hi, shift)
                    ticks = np.maximum(np.trunc((stamps - start) * 1e9), 0).astype("<u8")
                    base = int(ends[lo - 1]) if lo else 0
                    chunk = objects[base : int(ends[hi - 1])].copy()
                    at = (time_at[lo:hi] - base)[:, None] + np.arange(8)
                    chunk[at] = ticks.view(np.uint8).reshape(-1, 8)
                    containers.add(chunk.tobytes())
                    stop = float(stamps[-1])
                    written += hi - lo
                    if progress is not None:
                        progress(written)
            containers.add(b"", final=True)
            size = out.tell()
            out.seek(0)
            out.write(
                FILE_HEADER_STRUCT.pack(
                    b"LOGG", FILE_HEADER_SIZE, BLFWriter.application_id, 0, 0, 0, 2, 6, 8, 1,
                    size, containers.uncompressed, written, 0,
                    *timestamp_to_systemtime(start), *timestamp_to_systemtime(stop),
                )
            )  # fmt: skip
    except (OSError, zlib.error) as exc:
        raise WorkloadError(f"cannot write {path}: {exc}") from exc
    return written


def _blf_objects(recording: Recording) -> tuple[_U8, npt.NDArray[np.int64]]:
    """One pass's objects without their times, and where each object ends."""
    frame = recording.frames
    fd = recording.flag(FD)
    channels = [can.util.channel2int(c) for c in frame.channels]
    # python-can's BLF channels start at 1; a frame without one goes on channel 1.
    numbers = np.array([1 if c is None else c + 1 for c in channels], dtype=np.int64)
    if numbers.min() < 0 or numbers.max() > 0xFFFF:
        raise WorkloadError("BLF channels are 16-bit numbers")
    channel = numbers[frame.channel].astype(np.uint16)
    ident = frame.arbitration_id | np.where(recording.flag(EXTENDED), np.uint32(0x80000000), 0)
    flags = np.where(recording.flag(REMOTE), 0x80, 0) | (~recording.flag(RX)).astype(np.uint8)
    sizes = np.where(fd, _FD_OBJECT.itemsize, _CLASSIC.itemsize)
    ends = np.cumsum(sizes)
    objects = np.zeros(int(ends[-1]), dtype=np.uint8)
    for dtype, rows, kind in ((_CLASSIC, ~fd, _CAN_MESSAGE), (_FD_OBJECT, fd, _CAN_FD_MESSAGE)):
        index = np.flatnonzero(rows)
        if not index.size:
            continue
        records = np.zeros(index.size, dtype=dtype)
        records["signature"] = b"LOBJ"
        records["header_size"] = 32
        records["version"] = 1
        records["size"] = dtype.itemsize
        records["type"] = kind
        records["time_flags"] = _TIME_ONE_NANS
        records["channel"] = channel[index]
        records["flags"] = flags[index]
        records["ident"] = ident[index]
        width = dtype["data"].shape[0]
        payload = frame.data[index, :width]
        records["data"][:, : payload.shape[1]] = payload
        if kind == _CAN_FD_MESSAGE:
            length = frame.length[index]
            records["dlc"] = [can.util.len2dlc(int(d)) for d in frame.dlc[index]]
            records["valid"] = length
            brs, esi = recording.flag(BRS)[index], recording.flag(ESI)[index]
            records["fd_flags"] = 1 | brs * np.uint8(2) | esi * np.uint8(4)  # EDL, BRS, ESI
        else:
            records["dlc"] = frame.dlc[index]
        starts = ends[index] - dtype.itemsize
        objects[starts[:, None] + np.arange(dtype.itemsize)] = records.view(np.uint8).reshape(
            -1, dtype.itemsize
        )
    return objects, ends
