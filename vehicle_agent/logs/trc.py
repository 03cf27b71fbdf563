"""A fast reader of PEAK TRC logs (versions 1.0 to 2.1): python-can's frames, in columns.

python-can's ``TRCReader`` splits every line and builds a message; this
reader cuts a whole block of lines into tokens and reads the frame lines with
numpy (see :mod:`vehicle_agent.logs.text`): for 2.0 and 2.1 the columns the
``$COLUMNS`` header names, e.g. ``1  17535.400 DT 1  00000100 Tx -  8  00 00
…``; for 1.x the fixed columns of the version; data bytes as two hex digits
with single spaces between. Every other line (comments, status and error
lines, ``RTR`` frames of 1.x, anything odd) goes through a port of python-can
4.6's handling, and so does every line of a 1.x file with a ``$COLUMNS``
header or a 2.x file whose columns the builder does not cover (no data column
last, say).

python-can's reading, kept here:

- The header is the ``;`` lines at the top; ``$FILEVERSION`` 1.1, 1.3, 2.0 or
  2.1 picks the version, anything else reads as 1.0. The first line after the
  header is parsed even when it is blank.
- A line is split on blanks (at most ``len($COLUMNS) - 1`` times); a line too
  short for a field python-can reads is skipped, as are lines of other types
  than Tx/Rx (1.x) or DT, FD, FB, FE, BI, RR (2.x), and 1.0's bus lines (id
  ``FFFFFFFF``).
- The timestamp is ``float(offset) / 1000`` plus the ``$STARTTIME`` (days
  since 1899-12-30 UTC) but for 1.0; an id of more than 4 hex digits is
  extended; the channel is the bus column (1.3, 2.x) or 1.
- 1.x reads ``dlc`` data bytes, one column each; 2.x reads the whole data
  column, only when the dlc is not 0 (with an ``l`` column the dlc is
  ``len2dlc`` of the length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from can.util import len2dlc

from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs.columns import BRS, ESI, EXTENDED, FD, REMOTE, RX, Channel, FrameColumns
from vehicle_agent.logs.fields import Tokens
from vehicle_agent.logs.text import (
    LINE_ERRORS,
    BuildTokens,
    Chunker,
    LineFormat,
    LineReader,
    Row,
    check_row,
    pack_rows,
    read_lines,
    text_blocks,
)

__all__ = ["read"]

_VERSIONS = {"1.1": 101, "1.3": 103, "2.0": 200, "2.1": 201}  # anything else: 1.0 (0)
#: Column letters of the 1.x versions, in order (python-can's fixed indices).
_V1_COLUMNS = {0: "NOIL", 101: "NOdIL", 103: "NOBdIRL"}
_V2_TYPES = {"DT", "FD", "FB", "FE", "BI", "RR"}
_TYPE_FLAGS = {
    "DT": 0,
    "FD": FD,
    "FB": FD | BRS,
    "FE": FD | BRS | ESI,
    "BI": FD | ESI,
    "RR": REMOTE,
}
_LEN2DLC = np.array([len2dlc(length) for length in range(100)], dtype=np.intp)

# Two-letter types (2.x) as 16-bit codes, to their flags (255: not a frame type).
_TYPE_CODES = np.full(1 << 16, 255, dtype=np.uint8)
for _name, _flags in _TYPE_FLAGS.items():
    _TYPE_CODES[int.from_bytes(_name.encode(), "big")] = _flags


@dataclass
class _Layout:
    """What the header says: version (0 for 1.0), start time and columns."""

    version: int = 0
    start: float = 0  # python-can's int 0 when there is no start time
    columns: dict[str, int] = field(default_factory=dict)
    maxsplit: int = -1


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the TRC log at *path* (``.trc`` or ``.trc.gz``), in chunks."""
    lines = LineReader(text_blocks(path))
    layout, (number, first) = _read_header(path, lines)
    parse_cols = _parser(layout)
    chunker = Chunker(chunk_frames)
    try:  # python-can parses the line after the header as it is, blank or not
        row = _parse_line(layout, parse_cols, first)
        if row is not None:
            check_row(row)
            yield from chunker.add(pack_rows([row]))
    except LINE_ERRORS as exc:
        raise LogFormatError(path, f"line {number}", f"{type(exc).__name__}: {exc}") from exc

    def parse_line(line: str) -> Row | None:
        line = line.strip()
        if line.startswith(";") or not line:
            return None
        return _parse_line(layout, parse_cols, line)

    fmt = LineFormat(parse_line, _token_builder(layout))
    yield from read_lines(path, fmt, lines.rest(), chunker)


def _read_header(path: Path, lines: LineReader) -> tuple[_Layout, tuple[int, str]]:
    """python-can's ``_extract_header``: the layout, and the line after the header."""
    layout = _Layout()
    number, line = 1, ""
    while (item := lines.next_line()) is not None:
        number, text = item
        line = text.strip()
        try:
            if line.startswith(";$FILEVERSION"):
                layout.version = _VERSIONS.get(line.split("=")[1], 0)
            elif line.startswith(";$STARTTIME"):
                days = float(line.split("=")[1])
                epoch = datetime(1899, 12, 30, tzinfo=UTC)
                layout.start = (epoch + timedelta(days=days)).timestamp()
            elif line.startswith(";$COLUMNS"):
                names = line.split("=")[1].split(",")
                layout.columns = {name: names.index(name) for name in names}
                layout.maxsplit = len(names) - 1
            elif not line.startswith(";"):
                break
        except IndexError:
            continue  # python-can logs it and reads on
        except (ValueError, OverflowError) as exc:
            raise LogFormatError(path, f"line {number}", f"{type(exc).__name__}: {exc}") from exc
    if layout.version >= 200 and not layout.columns:
        raise LogFormatError(path, f"line {number}", "ValueError: File has no column information")
    return layout, (number, line)


_ParseCols = Callable[[tuple[str, ...]], Row | None]


def _parse_line(layout: _Layout, parse_cols: _ParseCols, line: str) -> Row | None:
    try:
        return parse_cols(tuple(line.split(maxsplit=layout.maxsplit)))
    except IndexError:
        return None  # python-can logs the line and skips it


def _parser(layout: _Layout) -> _ParseCols:
    if layout.version >= 200:
        return partial(_parse_v2, layout)
    return partial(_parse_v1, layout)


def _parse_v1(layout: _Layout, cols: tuple[str, ...]) -> Row | None:
    """python-can's ``_parse_msg_v1_0``, ``_parse_cols_v1_1`` and ``_parse_cols_v1_3``."""
    at = {name: i for i, name in enumerate(_V1_COLUMNS[layout.version])}
    if "d" in at and cols[at["d"]] not in ("Tx", "Rx"):
        return None  # status and error lines
    arbit_id = cols[at["I"]]
    if layout.version == 0 and arbit_id == "FFFFFFFF":
        return None  # 1.0's bus information line
    timestamp = float(cols[1]) / 1000
    if layout.version:  # 1.0 has no start time (and adds nothing, not even 0)
        timestamp += layout.start
    can_id = int(arbit_id, 16)
    flags = EXTENDED if len(arbit_id) > 4 else 0
    channel = int(cols[at["B"]]) if "B" in at else 1
    dlc = int(cols[at["L"]])
    first = at["L"] + 1
    if len(cols) > first and cols[first] == "RTR":
        flags |= REMOTE
        data = b""
    else:
        data = bytes(bytearray([int(cols[i + first], 16) for i in range(dlc)]))
    if "d" not in at or cols[at["d"]] == "Rx":
        flags |= RX
    return (timestamp, can_id, flags, dlc, data, channel)


def _parse_v2(layout: _Layout, cols: tuple[str, ...]) -> Row | None:
    """python-can's ``_parse_cols_v2_x`` and ``_parse_msg_v2_x``."""
    columns = layout.columns
    type_ = cols[columns["T"]]
    if type_ not in _V2_TYPES:
        return None  # status, error and other event lines
    bus = columns.get("B", None)
    if "l" in columns:
        dlc = len2dlc(int(cols[columns["l"]]))
    elif "L" in columns:
        dlc = int(cols[columns["L"]])
    else:
        raise ValueError("No length/dlc columns present.")
    timestamp = float(cols[columns["O"]]) / 1000 + layout.start
    can_id = int(cols[columns["I"]], 16)
    flags = EXTENDED if len(cols[columns["I"]]) > 4 else 0
    channel = int(cols[bus]) if bus is not None else 1
    data = b""
    if dlc and type_ != "RR":
        data = bytes(bytearray.fromhex(cols[columns["D"]]))
    if cols[columns["d"]] == "Rx":
        flags |= RX
    return (timestamp, can_id, flags | _TYPE_FLAGS[type_], dlc, data, channel)


def _token_builder(layout: _Layout) -> BuildTokens | None:
    """How the lines of this layout are read in bulk, if the builder covers it."""
    if layout.version >= 200:
        names = sorted(layout.columns, key=layout.columns.__getitem__)
        needed = {"O", "T", "I", "d", "D"} <= set(names) and bool({"l", "L"} & set(names))
        if not needed or len(names) != layout.maxsplit + 1 or names[-1] != "D":
            return None  # python-can reads these, the builder does not
        return partial(_build, layout, layout.columns, layout.maxsplit)
    if layout.maxsplit != -1:
        return None  # a $COLUMNS header changes how python-can splits 1.x lines
    names = list(_V1_COLUMNS[layout.version])
    return partial(_build, layout, {name: i for i, name in enumerate(names)}, len(names))


def _build(
    layout: _Layout, at: dict[str, int], fixed: int, tokens: Tokens
) -> tuple[FrameColumns, npt.NDArray[np.bool_]]:
    """Frames of the lines python-can reads without a doubt: *fixed* columns (at *at*), then data.

    A line that is not plainly a frame (comment, other type, a field python-can
    would reject or read in a way of its own, too few columns) is not handled.
    """
    starts, _, _ = tokens.field(0)
    ok = tokens.clean & (tokens.count >= fixed) & (tokens.buf[starts] != ord(";"))
    s, e, present = tokens.field(at["O"])
    stamps, good = tokens.decimal((s, e, present & ok))
    ok &= good
    stamps = stamps / 1000
    if layout.version:  # 1.0 has no start time
        stamps += layout.start
    ident = tokens.field(at["I"])
    can_id, good = tokens.hex(ident)
    ok &= good
    flags = np.where(ident[1] - ident[0] > 4, np.uint8(EXTENDED), np.uint8(0))
    if "d" in at:
        received = tokens.equals(tokens.field(at["d"]), b"Rx")
        flags |= np.where(received, np.uint8(RX), np.uint8(0))
    else:
        flags |= RX
    channels: list[Channel]
    if "B" in at:
        bus, good = tokens.digits(tokens.field(at["B"]), 9)
        ok &= good
        if int(bus.min()) == int(bus.max()):
            codes, channels = np.zeros(tokens.lines, dtype=np.intp), [int(bus[0])]
        else:
            channel_values, codes = np.unique(bus, return_inverse=True)
            channels = [int(c) for c in channel_values]
    else:
        codes, channels = np.zeros(tokens.lines, dtype=np.intp), [1]
    data_tokens = tokens.count - fixed
    if layout.version >= 200:
        code, good = tokens.code(tokens.field(at["T"]))
        type_flags = _TYPE_CODES[code]
        ok &= good & (type_flags != 255)
        flags |= type_flags
        if "l" in at:
            length, good = tokens.digits(tokens.field(at["l"]), 2)
            dlc = _LEN2DLC[np.minimum(length, 99)]  # (more only on lines not handled)
        else:
            dlc, good = tokens.digits(tokens.field(at["L"]), 3)
            good &= dlc <= 255
        ok &= good
        wanted = (dlc != 0) & ((flags & REMOTE) == 0)
        ok &= ~wanted | ((data_tokens > 0) & (data_tokens <= 255))
        taken = np.where(ok & wanted, data_tokens, 0)
    else:
        if "d" in at:
            ok &= received | tokens.equals(tokens.field(at["d"]), b"Tx")
        if layout.version == 0:
            ok &= ~tokens.equals(ident, b"FFFFFFFF")
        dlc, good = tokens.digits(tokens.field(at["L"]), 3)
        ok &= good & (dlc <= data_tokens) & ~tokens.equals(tokens.field(fixed), b"RTR")
        taken = np.where(ok, dlc, 0)
    data, good = tokens.byte_matrix(tokens.first + fixed, taken)
    ok &= good
    columns = FrameColumns(
        timestamp=stamps,
        arbitration_id=can_id,
        flags=flags,
        dlc=dlc.astype(np.uint8),
        length=taken.astype(np.uint8),
        data=data,
        channel=codes.astype(np.int32),
        channels=channels,
    )
    return columns, ok
