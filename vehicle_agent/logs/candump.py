"""A fast reader of candump ``.log`` files (``candump -L``): python-can's frames, in columns.

python-can's ``CanutilsLogReader`` splits each line and builds a message; this
reader reads the lines of the usual shape, ``(1436509052.249713) vcan0
044#2A366C2BBA`` with an optional CAN FD ``#<flags>`` after the ``#``,
``R[<dlc>]`` for a remote frame and a trailing `` R``/`` T`` (received/sent,
as python-can writes it), in bulk: in a log of :data:`SCAN_FROM_BYTES` or
more, with a scanner compiled by numba that reads a block's bytes in one pass
(:mod:`vehicle_agent.logs.candump_scan`, filling the chunks of
:mod:`vehicle_agent.logs.candump_chunks`); in a smaller one, or without numba,
from a whole block's tokens at once with numpy (see
:mod:`vehicle_agent.logs.text`). Any other line goes through
:func:`parse_line`, a port of python-can 4.6's loop body, so odd files read
exactly as python-can reads them (or fail where it fails).

python-can's reading, kept here: the timestamp is ``float`` of the text between
the parentheses; a channel of digits becomes an int, any other stays text; an
id of more than 3 hex digits is extended; an id with both the error flag
(0x20000000) and the bus error class (0x80) makes an error frame with every
other field at ``can.Message``'s default (channel None, extended, received);
other ids keep their low 29 bits. Data of an odd number of hex digits gives a
last byte of one digit and a dlc of half the digits, rounded down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns
from vehicle_agent.logs.fields import Tokens
from vehicle_agent.logs.text import (
    Chunker,
    LineFormat,
    Row,
    ascii_blocks,
    read_lines,
    text_blocks,
)

__all__ = ["SCAN_FROM_BYTES", "parse_line", "read", "warm_up"]

_CAN_ERR_FLAG = 0x20000000
_CAN_ERR_BUSERROR = 0x00000080
_CANFD_BRS = 0x01
_CANFD_ESI = 0x02

# CAN FD flags by flag digit (10: not a CAN FD frame).
_FD_FLAGS = np.array(
    [FD | (BRS if d & _CANFD_BRS else 0) | (ESI if d & _CANFD_ESI else 0) for d in range(10)] + [0],
    dtype=np.uint8,
)
_LETTERS = np.frombuffer(b"RrTt", dtype=np.uint8)
_ERROR_FLAGS = EXTENDED | ERROR | RX  # can.Message(timestamp=..., is_error_frame=True)


#: Logs from this size on (on disk; a ``.gz`` counts four times its size, candump
#: text compresses 5-6 times) are read by the compiled scanner. Loading numba and
#: the scanner's cached code costs a process ~0.3 CPU-s and ~100 MiB once; the
#: scanner wins the time back from ~40 MB of text on (~0.47 µs a line).
SCAN_FROM_BYTES = 32 << 20


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the candump log at *path* (``.log`` or ``.log.gz``), in chunks."""
    if not _worth_scanning(path) or not warm_up():
        yield from read_lines(path, _FORMAT, text_blocks(path), Chunker(chunk_frames))
        return
    from vehicle_agent.logs.candump_chunks import ScannedChunks

    chunks = ScannedChunks(chunk_frames, _channel)
    fmt = LineFormat(parse_line, block=chunks.scan_block)
    yield from read_lines(path, fmt, ascii_blocks(path), chunks, direct=chunks.scan_into)


def warm_up() -> bool:
    """Load the compiled scanner (numba, and its code from the disk cache or compiled),
    as :func:`read` does for a large log; whether it is there."""
    from vehicle_agent.logs import candump_scan

    if not candump_scan.AVAILABLE:
        return False
    candump_scan.warm_up()
    return True


def _worth_scanning(path: Path) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False  # the numpy path reports it
    if path.name.lower().endswith(".gz"):
        size *= 4
    return size >= SCAN_FROM_BYTES


def parse_line(line: str) -> Row | None:
    """python-can's reading of one line: a frame, or None for a blank line; raises as it does."""
    temp = line.strip()
    if not temp:
        return None
    if temp[-2:].lower() in (" r", " t"):
        timestamp_string, channel_string, frame, is_rx_string = temp.split()
        is_rx = is_rx_string.strip().lower() == "r"
    else:
        timestamp_string, channel_string, frame = temp.split()
        is_rx = True
    timestamp = float(timestamp_string[1:-1])
    can_id_string, data = frame.split("#", maxsplit=1)
    channel = int(channel_string) if channel_string.isdigit() else channel_string
    is_extended = len(can_id_string) > 3
    can_id = int(can_id_string, 16)
    flags = EXTENDED if is_extended else 0
    if data and data[0] == "#":
        fd_flags = int(data[1])
        flags |= FD | (BRS if fd_flags & _CANFD_BRS else 0) | (ESI if fd_flags & _CANFD_ESI else 0)
        data = data[2:]
    payload = bytearray()
    if data and data[0].lower() == "r":
        flags |= REMOTE
        dlc = int(data[1:]) if len(data) > 1 else 0
    else:
        dlc = len(data) // 2
        for i in range(0, len(data), 2):
            payload.append(int(data[i : (i + 2)], 16))
    if can_id & _CAN_ERR_FLAG and can_id & _CAN_ERR_BUSERROR:
        return (timestamp, 0, _ERROR_FLAGS, 0, b"", None)
    if is_rx:
        flags |= RX
    return (timestamp, can_id & 0x1FFFFFFF, flags, dlc, bytes(payload), channel)


def _channel(text: str) -> int | str:
    # isascii: the text of a line not handled may be anything (and is dropped)
    return int(text) if text.isascii() and text.isdigit() else text


def _build(tokens: Tokens) -> tuple[FrameColumns, npt.NDArray[np.bool_]]:
    """Frames of the lines of the usual shape, and which lines have it.

    ``(<timestamp>) <channel> <id>#[#<flag digit>]<hex pairs> | R[<digit>]`` and,
    after a space, an optional single R, r, T or t.
    """
    buf = tokens.buf
    count = tokens.count
    ok = tokens.clean & ((count == 3) | (count == 4))
    starts, ends, present = tokens.field(0)
    ok &= present & (buf[starts] == ord("(")) & (buf[np.maximum(ends - 1, 0)] == ord(")"))
    stamps, good = tokens.decimal((starts + 1, ends - 1, ok))
    ok &= good
    starts, ends, _ = tokens.field(1)
    ok &= ends - starts <= 24  # longer channel names: the port
    codes, channels = tokens.text((starts, ends, ok), _channel)
    # The frame: id digits up to the first "#".
    starts, ends, _ = tokens.field(2)
    hashes = tokens.left(starts, 10) == ord("#")
    id_digits = np.argmax(hashes, axis=1)
    ok &= hashes.any(axis=1) & (id_digits >= 1) & (id_digits <= 8) & (id_digits < ends - starts)
    can_id, good = tokens.hex((starts, starts + id_digits, ok))
    ok &= good
    flags = np.where(id_digits > 3, np.uint8(EXTENDED), np.uint8(0))
    # "#<digit>" after the "#" makes a CAN FD frame.
    rest = starts + id_digits + 1
    head = tokens.left(rest, 2)
    fd = (ends - rest >= 1) & (head[:, 0] == ord("#"))
    fd_digit = head[:, 1] - np.uint8(48)
    ok &= ~fd | ((ends - rest >= 2) & (fd_digit <= 9))
    flags |= _FD_FLAGS[np.where(fd, np.minimum(fd_digit, 9), 10)]
    # Then hex pairs, or R with an optional dlc digit (a remote frame).
    data_start = rest + np.where(fd, 2, 0)
    digits = ends - data_start
    head = tokens.left(data_start, 2)
    remote = (digits >= 1) & ((head[:, 0] == ord("R")) | (head[:, 0] == ord("r")))
    remote_dlc = np.where(digits == 2, head[:, 1] - np.uint8(48), np.uint8(0))
    ok &= ~remote | (digits == 1) | ((digits == 2) & (remote_dlc <= 9))
    ok &= remote | (((digits & 1) == 0) & (digits <= 510))  # odd: python-can's own reading
    length = np.where(ok & ~remote, digits // 2, 0)
    data, good = tokens.packed_bytes(data_start, length)
    ok &= good
    flags[remote] |= REMOTE
    # A fourth token: the direction, a single letter after a space.
    starts, ends, _ = tokens.field(3)
    letter = tokens.left(starts, 1)[:, 0]
    four = count == 4
    space_before = buf[np.maximum(starts - 1, 0)] == ord(" ")
    ok &= ~four | ((ends - starts == 1) & np.isin(letter, _LETTERS) & space_before)
    flags |= np.where(
        ~four | (letter == ord("R")) | (letter == ord("r")), np.uint8(RX), np.uint8(0)
    )
    dlc = np.where(remote, remote_dlc, length)
    is_error = ((can_id & _CAN_ERR_FLAG) != 0) & ((can_id & _CAN_ERR_BUSERROR) != 0)
    can_id &= 0x1FFFFFFF
    if is_error.any():
        can_id[is_error] = 0
        flags[is_error] = _ERROR_FLAGS
        dlc[is_error] = 0
        length[is_error] = 0
        data[is_error] = 0
        codes[is_error] = len(channels)
        channels.append(None)
    columns = FrameColumns(
        timestamp=stamps,
        arbitration_id=can_id,
        flags=flags,
        dlc=dlc.astype(np.uint8),
        length=length.astype(np.uint8),
        data=data,
        channel=codes.astype(np.int32),
        channels=channels,
    )
    return columns, ok


_FORMAT = LineFormat(parse_line, _build)
