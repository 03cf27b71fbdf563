"""A fast reader of Vector ASC logs: python-can's frames, in columns.

python-can's ``ASCReader`` tries several regular expressions and splits on
every line; this reader reads the two usual frame lines, a classic data frame
(``2.501000 1  C8  Rx  d 8 09 08 07 06 05 04 03 02 …``) and a CAN FD data
frame (``30.005021 CANFD 1 Rx 300 [name] 1 0 8 8 11 c2 … …``), from a whole
block's tokens at once (see :mod:`vehicle_agent.logs.text`). Every other line
(header, trigger block, error and remote frames, statistics, J1939, anything
odd) goes through :func:`parse_line`, a port of python-can 4.6's handling, and
so does every line of a ``base dec`` file.

python-can's reading, kept here (it reads with its defaults, ``base="hex"``
and ``relative_timestamp=True``):

- The header is read up to and including the ``internal events logged`` line,
  or else the first line that is no header line, which is dropped. Only
  ``base`` matters: ``date`` and ``Begin Triggerblock`` set the start time,
  but relative timestamps make it 0.0, so a timestamp is ``float(text) + 0.0``.
- Only lines matching ``ASC_MESSAGE_REGEX`` are frames; a channel ``n`` is the
  int ``n - 1``; an id ending in ``x`` or ``X`` is extended; the dlc of a
  classic frame goes through ``dlc2len`` and at most 8 data bytes are read; a
  CAN FD frame has the data length as its dlc (a length of 0 makes it remote).
- Error frames keep ``can.Message``'s defaults (id 0, extended, no data); a
  classic error frame is received, a CAN FD one has the line's direction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from can.io.asc import ASC_MESSAGE_REGEX, ASC_TRIGGER_REGEX
from can.util import dlc2len

from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns
from vehicle_agent.logs.fields import Tokens
from vehicle_agent.logs.text import Chunker, LineFormat, LineReader, Row, read_lines, text_blocks

__all__ = ["parse_line", "read"]

# python-can's header lines (the date is only read for absolute timestamps).
_DATE = re.compile(r"date\s+\w+\s+(?P<datetime_string>.+)", re.IGNORECASE)
_BASE = re.compile(
    r"base\s+(?P<base>hex|dec)(?:\s+timestamps\s+(?P<timestamp_format>absolute|relative))?",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"//.*")
_START = re.compile(r"^\d+\.\d+\s+Start of measurement")

_DLC2LEN = np.array([dlc2len(d) for d in range(16)], dtype=np.intp)


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the ASC log at *path* (``.asc`` or ``.asc.gz``), in chunks."""
    lines = LineReader(text_blocks(path))
    base = _read_header(path, lines)
    # Only hex files are read in bulk; a ``base dec`` file goes through the port.
    fmt = LineFormat(partial(parse_line, base=base), _build if base == 16 else None)
    yield from read_lines(path, fmt, lines.rest(), Chunker(chunk_frames))


def _read_header(path: Path, lines: LineReader) -> int:
    """python-can's ``_extract_header``: the base of ids and data (16 or 10)."""
    base = 16
    while (item := lines.next_line()) is not None:
        number, text = item
        line = text.strip()
        if _DATE.match(line):
            continue
        if base_match := _BASE.match(line):
            name = base_match.group("base")
            if name not in ("hex", "dec"):
                raise LogFormatError(
                    path, f"line {number}", 'ValueError: base should be either "hex" or "dec"'
                )
            base = 10 if name == "dec" else 16
            continue
        if _COMMENT.match(line):
            continue
        break  # the internal events line, or else a line python-can drops
    return base


def parse_line(line: str, base: int = 16) -> Row | None:
    """python-can's reading of one line after the header; raises as it does."""
    line = line.strip()
    if ASC_TRIGGER_REGEX.match(line) or _START.match(line) or not ASC_MESSAGE_REGEX.match(line):
        return None
    try:
        timestamp_text, channel_text, rest = line.split(None, 2)
        timestamp = float(timestamp_text) + 0.0
        if channel_text == "CANFD":
            channel = None
        elif channel_text.isdigit():
            channel = int(channel_text) - 1
        else:
            return None  # statistics, J1939TP and the like
    except ValueError:
        return None  # python-can skips the line; past this point it raises
    if channel is None:
        return _can_fd(timestamp, rest, base)
    return _classic(timestamp, channel, rest, base)


def _can_id(text: str, base: int) -> tuple[int, int]:
    if text[-1:].lower() == "x":
        return int(text[0:-1], base), EXTENDED
    return int(text, base), 0


def _data(text: str, count: int, base: int) -> bytes:
    frame = bytearray()
    for byte in text.split()[:count]:
        frame.append(int(byte, base))
    return bytes(frame)


def _classic(timestamp: float, channel: int, line: str, base: int) -> Row:
    if line.strip()[0:10].lower() == "errorframe":
        return (timestamp, 0, EXTENDED | ERROR | RX, 0, b"", channel)
    id_text, direction, rest = line.split(None, 2)
    flags = RX if direction == "Rx" else 0
    can_id, extended = _can_id(id_text, base)
    flags |= extended
    if rest[0].lower() == "r":
        remote = rest.split()
        dlc = 0
        if len(remote) > 1 and remote[1].isdigit():
            dlc = int(remote[1], base)
        return (timestamp, can_id, flags | REMOTE, dlc, b"", channel)
    try:
        _, dlc_text, data = rest.split(None, 2)
    except ValueError:
        _, dlc_text = rest.split(None, 1)
        data = ""
    dlc = dlc2len(int(dlc_text, base))
    return (timestamp, can_id, flags, dlc, _data(data, min(8, dlc), base), channel)


def _can_fd(timestamp: float, line: str, base: int) -> Row:
    channel_text, direction, rest = line.split(None, 2)
    channel = int(channel_text) - 1
    flags = FD | (RX if direction == "Rx" else 0)
    if rest.strip()[:10].lower() == "errorframe":
        return (timestamp, 0, flags | EXTENDED | ERROR, 0, b"", channel)
    id_text, name_or_brs, rest = rest.split(None, 2)
    if name_or_brs.isdigit():
        brs = name_or_brs
        esi, dlc_text, length_text, data = rest.split(None, 3)
    else:
        brs, esi, dlc_text, length_text, data = rest.split(None, 4)
    can_id, extended = _can_id(id_text, base)
    flags |= extended | (BRS if brs == "1" else 0) | (ESI if esi == "1" else 0)
    dlc = int(dlc_text, base)
    length = int(length_text)
    payload = _data(data, length, base)
    if length == 0:
        return (timestamp, can_id, flags | REMOTE, dlc, b"", channel)
    return (timestamp, can_id, flags, length, payload, channel)


def _build(tokens: Tokens) -> tuple[FrameColumns, npt.NDArray[np.bool_]]:
    """Frames of the classic and CAN FD data frame lines, and which lines are those.

    ``<time> <channel> <id>[x] Rx|Tx d <dlc digit> <bytes>…`` and ``<time> CANFD
    <channel> Rx|Tx <id>[x] [<name>] <brs> <esi> <dlc digit> <length> <bytes>…``,
    the bytes as hex digit pairs with single spaces between; after the bytes
    python-can reads, anything.
    """
    count = tokens.count
    ok = tokens.clean & (count >= 6)
    start, end, present = tokens.field(0)
    stamps, good = tokens.decimal((start, end, present & ok), point=True)
    ok &= good
    fd = tokens.equals(tokens.field(1), b"CANFD")
    channel, good = tokens.digits(tokens.field(np.where(fd, 2, 1)), 9)
    ok &= good
    # The id: hex digits, an x or X after them for an extended one.
    start, end, present = tokens.field(np.where(fd, 4, 2))
    last = tokens.left(np.maximum(end - 1, 0), 1)[:, 0]
    extended = (last == ord("x")) | (last == ord("X"))
    can_id, good = tokens.hex((start, end - extended, present))
    ok &= good
    direction = tokens.field(3)
    received = tokens.equals(direction, b"Rx")
    flags = np.where(extended, np.uint8(EXTENDED), np.uint8(0))
    flags |= np.where(received, np.uint8(RX), np.uint8(0))
    # Classic: "d", a dlc digit (through dlc2len), at most 8 bytes from token 6 on.
    classic_ok = received | tokens.equals(direction, b"Tx")
    classic_ok &= tokens.equals(tokens.field(4), b"d")
    start, end, present = tokens.field(5)
    dlc_digit, good = tokens.hex((start, end, present))
    classic_ok &= good & (end - start == 1)
    classic_dlc = _DLC2LEN[np.minimum(dlc_digit, 15)]
    # CAN FD: a token of digits after the id is the BRS bit, else a name comes first.
    _, digits_only = tokens.digits((start, end, present), 18)
    at = np.where(digits_only, 5, 6)
    brs = tokens.equals(tokens.field(at), b"1")
    esi = tokens.equals(tokens.field(at + 1), b"1")
    fd_dlc, fd_ok = tokens.hex(tokens.field(at + 2))
    fd_length, good = tokens.digits(tokens.field(at + 3), 3)
    # python-can needs a token after the length, even for no bytes.
    fd_ok &= good & (end - start <= 18) & (fd_length <= 255) & (fd_dlc <= 255)
    fd_ok &= count >= at + 4 + np.maximum(fd_length, 1)
    ok &= np.where(fd, fd_ok, classic_ok)
    remote = fd & (fd_length == 0)
    flags |= np.where(fd, np.uint8(FD), np.uint8(0))
    flags |= np.where(fd & brs, np.uint8(BRS), np.uint8(0))
    flags |= np.where(fd & esi, np.uint8(ESI), np.uint8(0))
    flags |= np.where(remote, np.uint8(REMOTE), np.uint8(0))
    wanted = np.where(fd, fd_length, np.minimum(classic_dlc, 8))
    first = np.where(fd, at + 4, 6)
    ok &= count >= first + wanted
    taken = np.where(ok, wanted, 0)
    data, good = tokens.byte_matrix(tokens.first + first, taken)
    ok &= good
    values, codes = np.unique(channel - 1, return_inverse=True)
    columns = FrameColumns(
        timestamp=stamps + 0.0,  # python-can adds its start time, 0.0 (-0.0 becomes 0.0)
        arbitration_id=can_id,
        flags=flags,
        dlc=np.where(fd, np.where(remote, fd_dlc, fd_length), classic_dlc).astype(np.uint8),
        length=taken.astype(np.uint8),
        data=data,
        channel=codes.reshape(-1).astype(np.int32),
        channels=[int(value) for value in values],
    )
    return columns, ok
