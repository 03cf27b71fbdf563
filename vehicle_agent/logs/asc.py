"""A fast reader of Vector ASC logs: python-can's frames, in columns.

python-can's ``ASCReader`` tries several regular expressions and splits on
every line; this reader matches the two usual frame lines, a classic data
frame (``2.501000 1  C8  Rx  d 8 09 08 07 06 05 04 03 02 …``) and a CAN FD
data frame (``30.005021 CANFD 1 Rx 300 [name] 1 0 8 8 11 c2 … …``), for a
whole block of lines at once (see :mod:`vehicle_agent.logs.text`). Every other
line (header, trigger block, error and remote frames, statistics, J1939,
anything odd) goes through :func:`parse_line`, a port of python-can 4.6's
handling, and so does a ``base dec`` file.

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
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from can.io.asc import ASC_MESSAGE_REGEX, ASC_TRIGGER_REGEX
from can.util import dlc2len

from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns
from vehicle_agent.logs.fields import byte_rows, decimals, encode_channels, hex_ints, lookup
from vehicle_agent.logs.text import (
    Chunker,
    LineFormat,
    LineReader,
    Row,
    Shape,
    read_lines,
    text_blocks,
)

__all__ = ["parse_line", "read"]

# python-can's header lines (the date is only read for absolute timestamps).
_DATE = re.compile(r"date\s+\w+\s+(?P<datetime_string>.+)", re.IGNORECASE)
_BASE = re.compile(
    r"base\s+(?P<base>hex|dec)(?:\s+timestamps\s+(?P<timestamp_format>absolute|relative))?",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"//.*")
_START = re.compile(r"^\d+\.\d+\s+Start of measurement")

_HEX = "[0-9A-Fa-f]"
# The data bytes: single spaces before each (so their count is the text's
# length / 3), then anything python-can does not read, after a blank.
_DATA = rf"((?: {_HEX}{{2}})*+)(?:[ \t].*)?"
# Groups: timestamp, channel, id, x, direction, dlc digit, data.
_CLASSIC = (
    rf"[ \t]*([0-9]+\.[0-9]+)[ \t]+([0-9]+)[ \t]+({_HEX}{{1,8}})(x?)[ \t]+(Rx|Tx)"
    rf"[ \t]+d[ \t]+({_HEX}){_DATA}"
)
# Groups: timestamp, channel, direction, id, x, brs, esi, dlc digit, data
# length, data. A symbolic name never starts with a digit (python-can takes a
# token of digits for the BRS bit); python-can needs a token after the length.
_CAN_FD = (
    rf"[ \t]*([0-9]+\.[0-9]+)[ \t]+CANFD[ \t]+([0-9]+)[ \t]+(Rx|Tx)[ \t]+({_HEX}{{1,8}})(x?)"
    rf"[ \t]+(?:[A-Za-z_][0-9A-Za-z_]*[ \t]+)?([01])[ \t]+([01])[ \t]+({_HEX})[ \t]+([0-9]{{1,2}})"
    rf"(?=[ \t]+\S){_DATA}"
)

_DLC_DIGIT = {f"{d:x}": d for d in range(16)} | {f"{d:X}": d for d in range(16)}
_DLC2LEN = np.array([dlc2len(d) for d in range(16)], dtype=np.intp)
_EXTENDED = {"": 0, "x": EXTENDED}
_DIRECTION = {"Rx": RX, "Tx": 0}
_BIT = {"0": 0, "1": 1}


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the ASC log at *path* (``.asc`` or ``.asc.gz``), in chunks."""
    lines = LineReader(text_blocks(path))
    base = _read_header(path, lines)
    fmt = _HEX_FORMAT if base == 16 else _line_format(base)
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


def _channel(text: str) -> int:
    return int(text) - 1


def _timestamps(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    return decimals(texts) + 0.0  # python-can adds its start time, 0.0 (turns -0.0 into 0.0)


def _build_classic(
    texts: Sequence[Sequence[str]],
) -> tuple[FrameColumns, npt.NDArray[np.bool_] | None]:
    stamps, channel_texts, ids, x, direction, dlc_digit, hex_data = texts
    n = len(stamps)
    dlc = _DLC2LEN[lookup(dlc_digit, _DLC_DIGIT, np.intp)]
    wanted = np.minimum(dlc, 8)
    have = np.fromiter(map(len, hex_data), dtype=np.intp, count=n) // 3
    ok = have >= wanted  # with fewer bytes python-can reads whatever tokens follow
    codes, channels = encode_channels(channel_texts, _channel)
    columns = FrameColumns(
        timestamp=_timestamps(stamps),
        arbitration_id=hex_ints(ids, np.fromiter(map(len, ids), dtype=np.intp, count=n)),
        flags=lookup(x, _EXTENDED, np.uint8) | lookup(direction, _DIRECTION, np.uint8),
        dlc=dlc.astype(np.uint8),
        length=np.where(ok, wanted, 0).astype(np.uint8),
        data=byte_rows(bytes.fromhex("".join(hex_data)), have, np.where(ok, wanted, 0)),
        channel=codes,
        channels=channels,
    )
    return columns, None if ok.all() else ok


def _build_can_fd(
    texts: Sequence[Sequence[str]],
) -> tuple[FrameColumns, npt.NDArray[np.bool_] | None]:
    stamps, channel_texts, direction, ids, x, brs, esi, dlc_digit, size, hex_data = texts
    n = len(stamps)
    length = np.fromiter(map(int, size), dtype=np.intp, count=n)
    have = np.fromiter(map(len, hex_data), dtype=np.intp, count=n) // 3
    ok = have >= length
    remote = length == 0
    flags = lookup(x, _EXTENDED, np.uint8) | lookup(direction, _DIRECTION, np.uint8) | FD
    flags |= lookup(brs, _BIT, np.uint8) * np.uint8(BRS)
    flags |= lookup(esi, _BIT, np.uint8) * np.uint8(ESI)
    flags[remote] |= REMOTE
    dlc = np.where(remote, lookup(dlc_digit, _DLC_DIGIT, np.intp), length)
    taken = np.where(ok, length, 0)
    codes, channels = encode_channels(channel_texts, _channel)
    columns = FrameColumns(
        timestamp=_timestamps(stamps),
        arbitration_id=hex_ints(ids, np.fromiter(map(len, ids), dtype=np.intp, count=n)),
        flags=flags,
        dlc=dlc.astype(np.uint8),
        length=taken.astype(np.uint8),
        data=byte_rows(bytes.fromhex("".join(hex_data)), have, taken),
        channel=codes,
        channels=channels,
    )
    return columns, None if ok.all() else ok


def _line_format(base: int) -> LineFormat:
    """Every line through the port (``base dec`` files)."""
    return LineFormat([], lambda line: parse_line(line, base))


_HEX_FORMAT = LineFormat(
    [Shape(_CLASSIC, _build_classic), Shape(_CAN_FD, _build_can_fd)],
    parse_line,
)
