"""A fast reader of candump ``.log`` files (``candump -L``): python-can's frames, in columns.

python-can's ``CanutilsLogReader`` splits each line and builds a message; this
reader matches the usual line shape, ``(1436509052.249713) vcan0 044#2A366C2BBA``
with an optional CAN FD ``#<flags>`` after the ``#``, ``R[<dlc>]`` for a remote
frame and a trailing `` R``/`` T`` (received/sent, as python-can writes it),
for a whole block of lines at once (see :mod:`vehicle_agent.logs.text`). Any
other line goes through :func:`parse_line`, a port of python-can 4.6's loop
body, so odd files read exactly as python-can reads them (or fail where it
fails).

python-can's reading, kept here: the timestamp is ``float`` of the text between
the parentheses; a channel of digits becomes an int, any other stays text; an
id of more than 3 hex digits is extended; an id with both the error flag
(0x20000000) and the bus error class (0x80) makes an error frame with every
other field at ``can.Message``'s default (channel None, extended, received);
other ids keep their low 29 bits. Data of an odd number of hex digits gives a
last byte of one digit and a dlc of half the digits, rounded down.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns
from vehicle_agent.logs.fields import byte_rows, decimals, encode_channels, hex_ints, lookup
from vehicle_agent.logs.text import (
    Chunker,
    LineFormat,
    Row,
    Shape,
    read_lines,
    text_blocks,
)

__all__ = ["parse_line", "read"]

_CAN_ERR_FLAG = 0x20000000
_CAN_ERR_BUSERROR = 0x00000080
_CANFD_BRS = 0x01
_CANFD_ESI = 0x02

# Groups: timestamp, channel, id, FD flags, hex data, remote, direction.
_SHAPE = (
    r"\(([0-9]+\.[0-9]+)\) ([!-~]+) ([0-9A-Fa-f]{1,8})#(#[0-9])?"
    r"(?:([0-9A-Fa-f]*)|([Rr][0-9]?))(?: ([RTrt]))?"
)

_FD_FLAGS = {"": 0} | {
    f"#{d}": FD | (BRS if d & _CANFD_BRS else 0) | (ESI if d & _CANFD_ESI else 0) for d in range(10)
}
_REMOTE_DLC = {"": -1} | {f"{r}{d}": int(d or "0") for r in "Rr" for d in ["", *"0123456789"]}
_DIRECTION = {"": RX, "R": RX, "r": RX, "T": 0, "t": 0}
_ERROR_FLAGS = EXTENDED | ERROR | RX  # can.Message(timestamp=..., is_error_frame=True)


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the candump log at *path* (``.log`` or ``.log.gz``), in chunks."""
    yield from read_lines(path, _FORMAT, text_blocks(path), Chunker(chunk_frames))


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
    return int(text) if text.isdigit() else text


def _build(texts: Sequence[Sequence[str]]) -> tuple[FrameColumns, npt.NDArray[np.bool_] | None]:
    """Columns of lines of the usual shape; the regular expression checked every field."""
    stamps, channel_texts, ids, fd, hex_data, remote, direction = texts
    n = len(stamps)
    id_digits = np.fromiter(map(len, ids), dtype=np.intp, count=n)
    can_id = hex_ints(ids, id_digits)
    extended = id_digits > 3
    flags = np.where(extended, np.uint8(EXTENDED), np.uint8(0))
    flags |= lookup(fd, _FD_FLAGS, np.uint8)
    flags |= lookup(direction, _DIRECTION, np.uint8)
    digits = np.fromiter(map(len, hex_data), dtype=np.intp, count=n)
    # An odd number of digits (python-can reads the last one as a byte) or more
    # than 255 bytes: the line parser's business.
    ok = ((digits & 1) == 0) & (digits <= 510)
    if not ok.all():
        hex_data = [text if good else "" for text, good in zip(hex_data, ok.tolist(), strict=True)]
        digits[~ok] = 0
    length = digits // 2
    data = byte_rows(bytes.fromhex("".join(hex_data)), length)
    dlc = length.copy()
    remote_dlc = lookup(remote, _REMOTE_DLC, np.intp)
    is_remote = remote_dlc >= 0
    if is_remote.any():
        flags[is_remote] |= REMOTE
        dlc[is_remote] = remote_dlc[is_remote]
    codes, channels = encode_channels(channel_texts, _channel)
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
        timestamp=decimals(stamps),
        arbitration_id=can_id,
        flags=flags,
        dlc=dlc.astype(np.uint8),
        length=length.astype(np.uint8),
        data=data,
        channel=codes,
        channels=channels,
    )
    return columns, None if ok.all() else ok


_FORMAT = LineFormat([Shape(_SHAPE, _build)], parse_line)
