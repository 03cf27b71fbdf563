"""A compiled scanner of candump ``.log`` lines: one pass over a block's bytes, no tokens.

The numpy path of the candump reader (:mod:`vehicle_agent.logs.fields`) makes
some twenty passes over a block, one per field and check; at ~50 bytes a line
that costs ~0.5 µs a frame. This module reads the lines of the usual shape in
one pass, compiled by numba::

    (<digits>[.<digits>]) <channel> <hex id>#[#<digit>]<hex digits> | R[<digits>] [ <R|r|T|t>]

with single spaces and nothing before or after; it fills preallocated columns
and lists every other line (blank lines aside) for the port of python-can's
line parser, which raises where python-can raises. Each field gets exactly
python-can's value:

- the timestamp: its digits (17 at most) make an integer ``N <= 2**53`` and
  ``N / 10**k`` (``k <= 22``) divides two exact doubles, so IEEE division gives
  the correctly rounded quotient, the double ``float()`` gives; other
  timestamps take the line parser;
- the channel: each distinct token of a block is kept once, by its bytes, and
  turned into python-can's int or text in Python;
- the rest as :func:`vehicle_agent.logs.candump.parse_line` reads it (error
  frames, CAN FD flag digits, remote dlc, odd hex digits included).

When numba cannot be imported, :data:`AVAILABLE` is false and the reader keeps
to the numpy path.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns

__all__ = ["AVAILABLE", "MAX_CHANNELS", "MAX_DATA", "Scratch", "scan_block"]

#: Data bytes a line of the bulk path may carry (CAN FD's most); longer: the line parser.
MAX_DATA = 64
#: Distinct channels a block may name in the bulk path; lines naming more: the line parser.
MAX_CHANNELS = 64
#: Bytes a channel token of the bulk path may have.
MAX_CHANNEL_BYTES = 32
#: Fewest bytes a frame line of the bulk path takes, its newline included: ``(1) a 1#\n``.
_SHORTEST_LINE = 9

_CAN_ERR_FLAG = 0x20000000
_CAN_ERR_BUSERROR = 0x00000080
_ERROR_FLAGS = EXTENDED | ERROR | RX  # can.Message(timestamp=..., is_error_frame=True)
_EXACT = 2**53
_MAX_DIGITS = 17  # more could overflow int64 before the 2**53 test
_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # every one exact
# Hex digit values by byte; 16: not a hex digit.
_HEX = np.full(256, 16, dtype=np.uint8)
for _digit in "0123456789abcdefABCDEF":
    _HEX[ord(_digit)] = int(_digit, 16)

_NEWLINE, _SPACE, _OPEN, _CLOSE, _POINT, _HASH = 10, 32, 40, 41, 46, 35

_numba: ModuleType | None
try:
    import numba

    _numba = numba
except ImportError:  # the reader keeps to its numpy path
    _numba = None

#: Whether the scanner is compiled (numba imported); without, it is plain (slow) Python.
AVAILABLE = _numba is not None

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(function: _F) -> _F:
    """*function* compiled on its first call (and cached on disk, so once per machine)."""
    if _numba is None:
        return function
    return cast(_F, _numba.njit(cache=True, nogil=True)(function))


@_jit
def _same(buf: npt.NDArray[np.uint8], start: int, end: int, other: int, other_end: int) -> bool:
    if end - start != other_end - other:
        return False
    for i in range(end - start):  # noqa: SIM110 (numba compiles loops, not all() of a generator)
        if buf[start + i] != buf[other + i]:
            return False
    return True


@_jit
def _channel_code(
    buf: npt.NDArray[np.uint8],
    start: int,
    end: int,
    channel_at: npt.NDArray[np.int64],
    channels: int,
    last_code: int,
) -> int:
    """The code of the channel token ``buf[start:end]``: a known one's, *channels* for a
    new one, -1 when the table is full."""
    if last_code >= 0 and _same(
        buf, start, end, channel_at[last_code, 0], channel_at[last_code, 1]
    ):
        return last_code
    for code in range(channels):
        if code != last_code and _same(buf, start, end, channel_at[code, 0], channel_at[code, 1]):
            return code
    return channels if channels < MAX_CHANNELS else -1


@_jit
def _scan(
    buf: npt.NDArray[np.uint8],
    stamps: npt.NDArray[np.float64],
    ids: npt.NDArray[np.uint32],
    flags: npt.NDArray[np.uint8],
    dlcs: npt.NDArray[np.uint8],
    lengths: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    codes: npt.NDArray[np.int32],
    rows: npt.NDArray[np.int32],
    slow: npt.NDArray[np.int32],
    channel_at: npt.NDArray[np.int64],
    hexes: npt.NDArray[np.uint8],
    pow10: npt.NDArray[np.float64],
) -> tuple[int, int, int, int]:
    """Read the lines of *buf*; returns frames, slow lines, channels and data width.

    Frame ``i`` goes to index ``i`` of the columns, with its line's index in
    ``rows``; ``slow`` gets the indices of the lines not read; ``channel_at``
    the start and end offset of each distinct channel token (code -1: an error
    frame's None). ``data`` rows are zero past their length up to the width
    returned.

    Each field's loop stops at the first byte not of its kind, a newline
    included, so a line is read in one pass without looking for its end first.
    """
    size = buf.shape[0]
    frames = 0
    slows = 0
    channels = 0
    width = 0
    line = 0
    p = 0
    last_code = -1
    while p <= size:
        if p == size or buf[p] == _NEWLINE:  # blank: parse_line makes nothing of it
            line += 1
            p += 1
            continue
        good = False
        while True:  # taken once; break: the line is not of the usual shape
            if buf[p] != _OPEN:
                break
            p += 1
            mantissa = 0
            digits = 0
            decimals = 0
            point = False
            while p < size:
                c = buf[p]
                if 48 <= c <= 57:
                    digits += 1
                    if digits > _MAX_DIGITS:
                        break
                    mantissa = mantissa * 10 + (int(c) - 48)
                    if point:
                        decimals += 1
                elif c == _POINT and not point:
                    point = True
                else:
                    break
                p += 1
            if p + 1 >= size or buf[p] != _CLOSE or buf[p + 1] != _SPACE:
                break
            if digits == 0 or digits > _MAX_DIGITS or mantissa > _EXACT or decimals > 22:
                break
            p += 2
            # The channel: printable ASCII up to a space.
            channel_start = p
            while p < size and 33 <= buf[p] <= 126:
                p += 1
            channel_end = p
            if channel_end == channel_start or channel_end - channel_start > MAX_CHANNEL_BYTES:
                break
            if p >= size or buf[p] != _SPACE:
                break
            p += 1
            # The id: 1 to 8 hex digits up to the "#".
            ident = 0
            id_start = p
            while p < size and p - id_start < 8:
                value = hexes[buf[p]]
                if value >= 16:
                    break
                ident = (ident << 4) | int(value)
                p += 1
            id_digits = p - id_start
            if id_digits == 0 or p >= size or buf[p] != _HASH:
                break
            p += 1
            flag = EXTENDED if id_digits > 3 else 0
            if p < size and buf[p] == _HASH:  # CAN FD: "#" and a flag digit
                if p + 1 >= size or not 48 <= buf[p + 1] <= 57:
                    break
                fd_digit = int(buf[p + 1]) - 48
                flag |= FD | (BRS if fd_digit & 1 else 0) | (ESI if fd_digit & 2 else 0)
                p += 2
            dlc = 0
            length = 0
            if p < size and (buf[p] == 82 or buf[p] == 114):  # R, r: a remote frame
                flag |= REMOTE
                p += 1
                dlc_start = p
                while p < size and 48 <= buf[p] <= 57 and p - dlc_start < 2:
                    dlc = dlc * 10 + (int(buf[p]) - 48)
                    p += 1
            else:  # hex digit pairs; python-can makes a byte of a last odd digit
                count = 0
                while p < size:
                    high = hexes[buf[p]]
                    if high >= 16:
                        break
                    low = hexes[buf[p + 1]] if p + 1 < size else 16
                    if low >= 16:
                        if length < MAX_DATA:
                            data[frames, length] = high
                        length += 1
                        count += 1
                        p += 1
                        break
                    if length < MAX_DATA:
                        data[frames, length] = (int(high) << 4) | int(low)
                    length += 1
                    count += 2
                    p += 2
                if length > MAX_DATA:
                    break
                dlc = count // 2
            # Then the end of the line, or a space and the direction letter.
            if p == size or buf[p] == _NEWLINE:
                flag |= RX
            elif buf[p] == _SPACE and p + 1 < size and (p + 2 == size or buf[p + 2] == _NEWLINE):
                letter = buf[p + 1]
                if letter == 82 or letter == 114:
                    flag |= RX
                elif letter != 84 and letter != 116:  # T, t: sent
                    break
                p += 2
            else:
                break
            if ident & _CAN_ERR_FLAG and ident & _CAN_ERR_BUSERROR:
                ident = 0
                flag = _ERROR_FLAGS
                dlc = 0
                length = 0
                code = -1
            else:
                ident &= 0x1FFFFFFF
                code = _channel_code(
                    buf, channel_start, channel_end, channel_at, channels, last_code
                )
                if code < 0:  # too many channels
                    break
                if code == channels:
                    channel_at[code, 0] = channel_start
                    channel_at[code, 1] = channel_end
                    channels += 1
                last_code = code
            for i in range(length, 8):  # zero the row up to the usual width
                data[frames, i] = 0
            if length > width:
                width = length
            stamps[frames] = mantissa / pow10[decimals]
            ids[frames] = ident
            flags[frames] = flag
            dlcs[frames] = dlc
            lengths[frames] = length
            codes[frames] = code
            rows[frames] = line
            frames += 1
            good = True
            break
        if not good:
            slow[slows] = line
            slows += 1
            while p < size and buf[p] != _NEWLINE:
                p += 1
        line += 1
        p += 1  # past the newline
    if width > 8:  # rows were zeroed up to 8 bytes only
        for row in range(frames):
            for i in range(max(int(lengths[row]), 8), width):
                data[row, i] = 0
    return frames, slows, channels, width


class Scratch:
    """Columns a reader's blocks are scanned into, grown as a block needs."""

    def __init__(self) -> None:
        self._frames = -1
        self._lines = -1

    def ensure(self, size: int) -> None:
        """Room for a block of *size* bytes."""
        frames = size // _SHORTEST_LINE + 1
        if frames > self._frames:
            self._frames = frames
            self.stamps = np.empty(frames, dtype=np.float64)
            self.ids = np.empty(frames, dtype=np.uint32)
            self.flags = np.empty(frames, dtype=np.uint8)
            self.dlcs = np.empty(frames, dtype=np.uint8)
            self.lengths = np.empty(frames, dtype=np.uint8)
            self.data = np.empty((frames, MAX_DATA), dtype=np.uint8)
            self.codes = np.empty(frames, dtype=np.int32)
            self.rows = np.empty(frames, dtype=np.int32)
        if size + 1 > self._lines:
            self._lines = size + 1
            self.slow = np.empty(size + 1, dtype=np.int32)
            self.channel_at = np.empty((MAX_CHANNELS, 2), dtype=np.int64)


def scan_block(
    raw: bytes, scratch: Scratch, channel: Callable[[str], Any]
) -> tuple[FrameColumns, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The frames of the usual lines of *raw* (lines joined by ``\\n``), their line
    indices, and the indices of the lines left for the line parser (blank lines in
    neither).

    *channel* turns a channel token's text into python-can's channel value.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    s = scratch
    s.ensure(len(raw))
    frames, slows, channels, width = _scan(
        buf,
        s.stamps,
        s.ids,
        s.flags,
        s.dlcs,
        s.lengths,
        s.data,
        s.codes,
        s.rows,
        s.slow,
        s.channel_at,
        _HEX,
        _POW10,
    )
    texts = [raw[a:b].decode("ascii") for a, b in s.channel_at[:channels].tolist()]
    merged: dict[Any, int] = {}  # "7" and "07" are both channel 7
    remap = [merged.setdefault(channel(text), len(merged)) for text in texts]
    codes = s.codes[:frames]
    if frames and int(codes.min()) < 0:  # error frames: channel None
        remap.append(merged.setdefault(None, len(merged)))
        codes = np.where(codes < 0, len(remap) - 1, codes)
    code_map = np.array(remap, dtype=np.int32)
    columns = FrameColumns(
        timestamp=s.stamps[:frames].copy(),
        arbitration_id=s.ids[:frames].copy(),
        flags=s.flags[:frames].copy(),
        dlc=s.dlcs[:frames].copy(),
        length=s.lengths[:frames].copy(),
        data=np.ascontiguousarray(s.data[:frames, :width]),
        channel=code_map[codes] if len(code_map) else codes.astype(np.int32),
        channels=list(merged),
    )
    return columns, s.rows[:frames].astype(np.intp), s.slow[:slows].astype(np.intp)
