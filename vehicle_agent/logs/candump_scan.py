"""A compiled scanner of candump ``.log`` lines: one pass over a block's bytes, no tokens.

The numpy path of the candump reader (:mod:`vehicle_agent.logs.fields`) makes
some twenty passes over a block, one per field and check; at ~50 bytes a line
that costs ~0.5 µs a frame. This module reads the lines of the usual shape in
one pass, compiled by numba::

    (<digits>[.<digits>]) <channel> <hex id>#[#<digit>]<hex digits> | R[<digits>] [ <R|r|T|t>]

with single spaces and nothing before or after, straight into the columns of
a :class:`FrameBuffer`; every other line (blank lines aside) is listed for the
port of python-can's line parser, which raises where python-can raises. Each
field gets exactly python-can's value:

- the timestamp: its digits (17 at most) make an integer ``N <= 2**53`` and
  ``N / 10**k`` (``k <= 22``) divides two exact doubles, so IEEE division gives
  the correctly rounded quotient, the double ``float()`` gives; other
  timestamps take the line parser;
- the channel: the scanner knows up to :data:`MAX_CHANNELS` distinct tokens
  of a file by their bytes (:class:`Channels`), each turned once into
  python-can's int or text in Python; a line naming another takes the line
  parser;
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
)

__all__ = [
    "AVAILABLE",
    "MAX_CHANNELS",
    "MAX_DATA",
    "SHORTEST_LINE",
    "Channels",
    "FrameBuffer",
    "Lines",
    "warm_up",
]

#: Data bytes a line of the bulk path may carry (CAN FD's most); longer: the line parser.
MAX_DATA = 64
#: Distinct channel tokens a reader's scanner knows; lines naming others: the line parser.
MAX_CHANNELS = 256
#: Bytes a channel token of the bulk path may have.
MAX_CHANNEL_BYTES = 32
#: Fewest bytes a frame line of the bulk path takes, its newline included: ``(1) a 1#\n``.
SHORTEST_LINE = 9

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

# The scanner's state, an int64 array: its fields.
_AT, _LINE, _FRAME, _FIRST, _SLOWS, _KNOWN, _STOP_AT_SLOW, _NEW_START, _NEW_END = range(9)
# Why the scanner stopped: the end of the block; a line not read (when asked to stop
# there); a channel token not in its table; a frame wider than the data columns.
_DONE, _SLOW, _NEW_CHANNEL, _WIDE = range(4)

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
    try:
        return cast(_F, _numba.njit(cache=True, nogil=True)(function))
    except RuntimeError:  # no writable cache directory: compiled in each process instead
        return cast(_F, _numba.njit(nogil=True)(function))


@_jit
def _same(
    buf: npt.NDArray[np.uint8],
    start: int,
    end: int,
    names: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.int64],
    entry: int,
) -> bool:
    """Whether the token ``buf[start:end]`` is the table's entry *entry*."""
    if sizes[entry] != end - start:
        return False
    for i in range(end - start):  # noqa: SIM110 (numba compiles loops, not all() of a generator)
        if buf[start + i] != names[entry, i]:
            return False
    return True


@_jit
def _channel_code(
    buf: npt.NDArray[np.uint8],
    start: int,
    end: int,
    names: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.int64],
    known: int,
    hint: int,
) -> int:
    """The table entry of the channel token ``buf[start:end]`` (*hint* tried first), or -1."""
    if hint >= 0 and _same(buf, start, end, names, sizes, hint):
        return hint
    for entry in range(known):
        if entry != hint and _same(buf, start, end, names, sizes, entry):
            return entry
    return -1


@_jit
def _scan(
    buf: npt.NDArray[np.uint8],
    state: npt.NDArray[np.int64],
    stamps: npt.NDArray[np.float64],
    ids: npt.NDArray[np.uint32],
    flags: npt.NDArray[np.uint8],
    dlcs: npt.NDArray[np.uint8],
    lengths: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    codes: npt.NDArray[np.int32],
    rows: npt.NDArray[np.int32],
    slow: npt.NDArray[np.int32],
    names: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.int64],
    values: npt.NDArray[np.int32],
    hexes: npt.NDArray[np.uint8],
    pow10: npt.NDArray[np.float64],
) -> int:
    """Read the lines of *buf* from where *state* says; returns why it stopped.

    ``state`` holds the offset of the next line, its index, the next frame's
    row in the columns, the row of the block's first frame, how many lines are
    in ``slow``, how many channel tokens the table holds, whether to stop at
    the first line not read, and (out) a new channel token's start and end.
    Frame rows get their line's index in ``rows`` (from the block's first
    frame on), the lines not read go to ``slow``; a channel's code is the
    value index ``values`` gives for its token in the table (``names``,
    ``sizes``); an error frame's is 0, None's. Data rows are zero past their
    length.

    Each field's loop stops at the first byte not of its kind, a newline
    included, so a line is read in one pass without looking for its end first.
    """
    size = buf.shape[0]
    width = data.shape[1]
    p = state[_AT]
    line = state[_LINE]
    frames = state[_FRAME]
    first = state[_FIRST]
    slows = state[_SLOWS]
    known = state[_KNOWN]
    hint = -1
    status = _DONE
    while p <= size:
        if p == size or buf[p] == _NEWLINE:  # blank: parse_line makes nothing of it
            line += 1
            p += 1
            continue
        line_start = p
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
                        if length < width:
                            data[frames, length] = high
                        length += 1
                        count += 1
                        p += 1
                        break
                    if length < width:
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
            if length > width:  # the caller widens the columns and starts again here
                status = _WIDE
                break
            if ident & _CAN_ERR_FLAG and ident & _CAN_ERR_BUSERROR:
                ident = 0
                flag = _ERROR_FLAGS
                dlc = 0
                length = 0
                code = 0
            else:
                ident &= 0x1FFFFFFF
                entry = _channel_code(buf, channel_start, channel_end, names, sizes, known, hint)
                if entry < 0:
                    if known < names.shape[0]:  # the caller adds the token, starts again here
                        state[_NEW_START] = channel_start
                        state[_NEW_END] = channel_end
                        status = _NEW_CHANNEL
                    break  # a full table: the line parser
                hint = entry
                code = values[entry]
            for i in range(length, width):
                data[frames, i] = 0
            stamps[frames] = mantissa / pow10[decimals]
            ids[frames] = ident
            flags[frames] = flag
            dlcs[frames] = dlc
            lengths[frames] = length
            codes[frames] = code
            rows[frames - first] = line
            frames += 1
            good = True
            break
        if status != _DONE:
            p = line_start
            break
        if not good:
            if state[_STOP_AT_SLOW]:
                status = _SLOW
                break
            slow[slows] = line
            slows += 1
            while p < size and buf[p] != _NEWLINE:
                p += 1
        line += 1
        p += 1  # past the newline
    state[_AT] = p
    state[_LINE] = line
    state[_FRAME] = frames
    state[_SLOWS] = slows
    return status


class Channels:
    """The channels a reader has met: python-can's values, and the tokens the scanner knows.

    Value 0 is None (error frames'); the frames' codes index :attr:`values`
    across the whole file. ``"7"`` and ``"07"`` are two tokens of one value.
    """

    def __init__(self, convert: Callable[[str], Channel]) -> None:
        self._convert = convert
        self.values: list[Channel] = [None]
        self._index: dict[Channel, int] = {None: 0}
        #: The tokens' bytes, their sizes and their values' indices, as the scanner reads them.
        self.names = np.zeros((MAX_CHANNELS, MAX_CHANNEL_BYTES), dtype=np.uint8)
        self.sizes = np.zeros(MAX_CHANNELS, dtype=np.int64)
        self.token_values = np.zeros(MAX_CHANNELS, dtype=np.int32)
        self.tokens = 0

    def code(self, value: Channel) -> int:
        """The index of *value*, added if new."""
        code = self._index.get(value)
        if code is None:
            code = self._index[value] = len(self.values)
            self.values.append(value)
        return code

    def add_token(self, token: bytes) -> None:
        """A channel token the scanner met (ASCII, at most :data:`MAX_CHANNEL_BYTES`)."""
        code = self.code(self._convert(token.decode("ascii")))
        k = self.tokens
        self.names[k, : len(token)] = np.frombuffer(token, dtype=np.uint8)
        self.sizes[k] = len(token)
        self.token_values[k] = code
        self.tokens += 1


class Lines:
    """What a reader's scanner keeps per block: its state, lines' indices (reused)."""

    def __init__(self) -> None:
        self.state = np.zeros(9, dtype=np.int64)
        self.rows = np.empty(0, dtype=np.int32)
        self.slow = np.empty(0, dtype=np.int32)

    def ensure(self, size: int) -> None:
        """Room for the frames and lines of a block of *size* bytes."""
        if len(self.slow) < size + 1:
            self.rows = np.empty(size // SHORTEST_LINE + 1, dtype=np.int32)
            self.slow = np.empty(size + 1, dtype=np.int32)


class FrameBuffer:
    """Columns of frames that the scanner fills; rows ``start`` to ``count`` not taken yet.

    Taken rows are views (:meth:`take`), so the buffer never writes over them:
    when it needs more room, or wider data, it moves the rows not taken into
    new arrays.
    """

    def __init__(self, capacity: int, width: int = 8) -> None:
        self.start = 0
        self.count = 0
        self._allocate(capacity, width)

    def _allocate(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.stamps = np.empty(capacity, dtype=np.float64)
        self.ids = np.empty(capacity, dtype=np.uint32)
        self.flags = np.empty(capacity, dtype=np.uint8)
        self.dlcs = np.empty(capacity, dtype=np.uint8)
        self.lengths = np.empty(capacity, dtype=np.uint8)
        self.data = np.empty((capacity, width), dtype=np.uint8)
        self.codes = np.empty(capacity, dtype=np.int32)

    def _move(self, capacity: int, width: int) -> None:
        """Rows ``start`` to ``count`` to the front of new arrays."""
        a, b = self.start, self.count
        old: tuple[npt.NDArray[Any], ...] = self._columns()
        old_data = self.data
        self._allocate(capacity, width)
        new = self._columns()
        for target, source in zip(new, old, strict=True):
            target[: b - a] = source[a:b]
        kept = min(width, old_data.shape[1])
        self.data[: b - a, :kept] = old_data[a:b, :kept]
        self.data[: b - a, kept:] = 0
        self.start, self.count = 0, b - a

    def _columns(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.stamps, self.ids, self.flags, self.dlcs, self.lengths, self.codes)

    def reserve(self, rows: int) -> None:
        """Room for *rows* more rows."""
        if self.count + rows > self.capacity:
            self._move(max(self.capacity, self.count - self.start + rows), self.data.shape[1])

    def widen(self, width: int) -> None:
        """Data columns at least *width* bytes wide."""
        if width > self.data.shape[1]:
            self._move(self.capacity, width)

    def scan(
        self, raw: bytes, channels: Channels, lines: Lines, *, stop_at_slow: bool
    ) -> npt.NDArray[np.int32] | None:
        """Scan the lines of *raw* into rows from ``count`` on; the indices of the lines
        not read (their frames' line indices are in ``lines.rows``).

        With *stop_at_slow*, a line not read drops the block's rows and returns None.
        """
        buf = np.frombuffer(raw, dtype=np.uint8)
        self.reserve(len(raw) // SHORTEST_LINE + 1)
        lines.ensure(len(raw))
        state = lines.state
        state[:] = 0
        state[_FRAME] = state[_FIRST] = self.count
        state[_STOP_AT_SLOW] = stop_at_slow
        while True:
            state[_KNOWN] = channels.tokens
            status = _scan(
                buf,
                state,
                self.stamps,
                self.ids,
                self.flags,
                self.dlcs,
                self.lengths,
                self.data,
                self.codes,
                lines.rows,
                lines.slow,
                channels.names,
                channels.sizes,
                channels.token_values,
                _HEX,
                _POW10,
            )
            if status == _DONE:
                self.count = int(state[_FRAME])
                return lines.slow[: state[_SLOWS]]
            if status == _SLOW:
                return None
            if status == _NEW_CHANNEL:
                channels.add_token(raw[state[_NEW_START] : state[_NEW_END]])
            else:  # _WIDE: move the rows, this block's so far included, into wider columns
                self.count = int(state[_FRAME])
                shift = self.start
                self.widen(MAX_DATA)
                state[_FRAME] -= shift
                state[_FIRST] -= shift
                self.count = int(state[_FIRST])

    def append(self, piece: FrameColumns, channels: Channels) -> None:
        """Copy the frames of *piece* in after the others."""
        n = len(piece)
        width = piece.data.shape[1]
        self.reserve(n)
        self.widen(width)
        a, b = self.count, self.count + n
        self.stamps[a:b] = piece.timestamp
        self.ids[a:b] = piece.arbitration_id
        self.flags[a:b] = piece.flags
        self.dlcs[a:b] = piece.dlc
        self.lengths[a:b] = piece.length
        self.data[a:b, :width] = piece.data
        self.data[a:b, width:] = 0
        codes = np.array([channels.code(value) for value in piece.channels], dtype=np.int32)
        self.codes[a:b] = codes[piece.channel] if n else 0
        self.count = b

    def take(self, n: int, channels: Channels) -> FrameColumns:
        """The next *n* rows, as views, with only the channels they use."""
        a, b = self.start, self.start + n
        self.start = b
        codes = self.codes[a:b]
        values = channels.values
        used = np.bincount(codes, minlength=len(values)) > 0
        if used.all():
            names = list(values)
        else:
            keep = np.flatnonzero(used)
            remap = np.zeros(len(values), dtype=np.int32)
            remap[keep] = np.arange(len(keep), dtype=np.int32)
            codes = remap[codes]
            names = [values[k] for k in keep.tolist()]
        width = int(self.lengths[a:b].max()) if n else 0
        data = self.data[a:b, :width]
        return FrameColumns(
            timestamp=self.stamps[a:b],
            arbitration_id=self.ids[a:b],
            flags=self.flags[a:b],
            dlc=self.dlcs[a:b],
            length=self.lengths[a:b],
            data=data if width == self.data.shape[1] else np.ascontiguousarray(data),
            channel=codes,
            channels=names,
        )


def warm_up() -> None:
    """Compile the scanner, or load it from the disk cache, by scanning one line."""
    buffer = FrameBuffer(1)
    buffer.scan(b"(1.5) can0 123#11", Channels(str), Lines(), stop_at_slow=False)
