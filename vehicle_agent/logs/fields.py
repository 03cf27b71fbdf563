"""Fields of text log lines as numpy arrays, each value exactly what Python makes of it.

The fast text readers (:mod:`vehicle_agent.logs.text`) see a block of lines
as :class:`Tokens`: the blank-separated tokens of the whole block, found with
numpy as byte offsets, without a Python object per token. The fields are
parsed here in bulk, each parser also saying which lines' field is well formed
(the reader hands the other lines to its port of python-can's line parser):

- decimal numbers (``digits[.digits]``) exactly as ``float()`` parses them:
  the digits make an integer ``N <= 2**53`` and ``N / 10**k`` in float64 is the
  correctly rounded quotient of two exact doubles, the same double as the
  correctly rounded ``float()``;
- hex and decimal integers of a few digits, two-character codes, words;
- channel names, and data bytes written as hex digit pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.columns import Channel

__all__ = [
    "Span",
    "Tokens",
    "byte_rows",
]

Ints = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]
#: A token (or a part of one) of each line: start and end offsets, and which lines have it.
Span = tuple[Ints, Ints, Mask]

_HEX_VALUES = np.full(256, 16, dtype=np.uint8)  # 16: not a hex digit
for _digit in "0123456789abcdefABCDEF":
    _HEX_VALUES[ord(_digit)] = int(_digit, 16)
_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10**18 .. 10**0
_POW16 = 16 ** np.arange(7, -1, -1, dtype=np.uint64)  # 16**7 .. 16**0
_EXACT = 2**53  # every integer up to here is a double
_ONE_BIG = 19  # longest decimal token worth a look (18 digits and the point)
_PAD = 24  # zero bytes around a block's text, so that windows stay inside (8-byte words)
_ODD = np.ones(256, dtype=np.bool_)  # bytes other than printable ASCII, tab and newline
_ODD[32:127] = _ODD[9] = _ODD[10] = False


class Tokens:
    """The blank-separated tokens of a block of lines, by line, as byte offsets.

    Blanks are space, tab and newline: in a line of printable ASCII these are
    exactly the characters ``str.split()`` splits on. :attr:`clean` is false
    for the lines with any other character; their tokens mean nothing.
    """

    def __init__(self, block: str) -> None:
        buf = np.frombuffer(block.encode("utf-8"), dtype=np.uint8)
        self.buf = buf
        # Token edges: where a blank and a non-blank meet (blanks all round the text).
        blank = np.concatenate(([True], buf <= 32, [True]))
        edges = np.flatnonzero(blank[:-1] != blank[1:])
        starts, ends = edges[0::2], edges[1::2]
        newlines = np.flatnonzero(buf == 10)
        self.lines = len(newlines) + 1
        self.starts = starts
        self.ends = ends
        #: The index of each line's first token, and how many it has.
        self.first = np.concatenate(([0], np.searchsorted(starts, newlines)))
        self.count = np.diff(self.first, append=len(starts))
        self.clean = np.ones(self.lines, dtype=np.bool_)
        controls = np.count_nonzero(buf < 32) - len(newlines) - np.count_nonzero(buf == 9)
        if controls or int(buf.max(initial=0)) > 126:  # rare: find the lines
            self.clean[np.searchsorted(newlines, np.flatnonzero(_ODD[buf]))] = False
        # Windows may reach before the first byte and past the last.
        self._padded = np.concatenate((np.zeros(_PAD, np.uint8), buf, np.zeros(_PAD, np.uint8)))

    def field(self, index: int | Ints) -> Span:
        """Each line's token *index*: start and end offsets, and which lines have one."""
        present = self.count > index
        if not len(self.starts):
            zeros = np.zeros(self.lines, dtype=np.intp)
            return zeros, zeros, present
        token = np.where(present, self.first + index, 0)
        return self.starts[token], self.ends[token], present

    def equals(self, span: Span, word: bytes) -> Mask:
        """Which lines' *span* is *word*."""
        starts, ends, present = span
        chars, _ = _window(self._padded, starts, ends, len(word))
        sized: Mask = ends - starts == len(word)
        return present & sized & _rows_equal(chars, word)

    def code(self, span: Span) -> tuple[npt.NDArray[np.uint16], Mask]:
        """A *span* of two characters as a big-endian 16-bit code; which are two long."""
        starts, ends, present = span
        chars, _ = _window(self._padded, starts, ends, 2)
        codes = ((chars[:, 0].astype(np.uint16) << 8) | chars[:, 1]).astype(np.uint16)
        sized: Mask = ends - starts == 2
        return codes, present & sized

    def digits(self, span: Span, most: int) -> tuple[npt.NDArray[np.int64], Mask]:
        """A *span* as a decimal integer of 1 to *most* (< 19) digits; which are."""
        starts, ends, present = span
        chars, inside = _window(self._padded, starts, ends, most)
        value = np.where(inside, chars - np.uint8(48), np.uint8(0))
        ok = present & (ends > starts) & (ends - starts <= most) & _rows_below(value, 10)
        return value.astype(np.int64) @ _POW10[-most:], ok

    def hex(self, span: Span) -> tuple[npt.NDArray[np.uint32], Mask]:
        """A *span* as 1 to 8 hex digits; which are."""
        starts, ends, present = span
        chars, inside = _window(self._padded, starts, ends, 8)
        value = np.where(inside, _HEX_VALUES[chars], np.uint8(0))
        ok = present & (ends > starts) & (ends - starts <= 8) & _rows_below(value, 16)
        return (value.astype(np.uint64) @ _POW16).astype(np.uint32), ok

    def decimal(self, span: Span, point: bool = False) -> tuple[npt.NDArray[np.float64], Mask]:
        """A *span* as ``float()`` reads ``digits[.digits]``; which are that (with *point*:
        which are ``digits.digits``).

        Tokens with the point elsewhere than most have it are not taken.
        """
        values, ok, places = _decimal(self._padded, *span)
        return values, ok if places or not point else np.zeros_like(ok)

    def text(self, span: Span, convert: Callable[[str], Channel]) -> tuple[Ints, list[Channel]]:
        """Codes of each *span*'s text (up to 24 characters, else garbage) and the values."""
        starts, ends, _ = span
        chars = _rows_of(self._padded, _PAD)[starts + _PAD]
        chars = np.where(np.arange(_PAD) < (ends - starts)[:, None], chars, np.uint8(0))
        if (chars == chars[0]).all():
            codes, firsts = np.zeros(len(chars), dtype=np.intp), np.zeros(1, dtype=np.intp)
        else:  # distinct texts: by their three 8-byte words (np.unique by rows is slow)
            words = chars.view(np.uint64)
            key = np.zeros(len(chars), dtype=np.int64)
            for column in words.T:
                values, index = np.unique(column, return_inverse=True)
                key = key * len(values) + index.reshape(-1)
            _, firsts, codes = np.unique(key, return_index=True, return_inverse=True)
        merged: dict[Channel, int] = {}
        remap = [merged.setdefault(convert(_text(chars[i])), len(merged)) for i in firsts]
        return np.array(remap, dtype=np.intp)[codes.reshape(-1)], list(merged)

    def left(self, starts: Ints, width: int) -> npt.NDArray[np.uint8]:
        """The *width* (<= 24) bytes from each of *starts* on (zeros past the text)."""
        return _rows_of(self._padded, width)[starts + _PAD]

    def packed_bytes(self, starts: Ints, count: Ints) -> tuple[npt.NDArray[np.uint8], Mask]:
        """Rows of *count* bytes written as hex digit pairs from each of *starts* on; which are."""
        return self._hex_pairs(starts, count, 2)

    def byte_matrix(self, first: Ints, count: Ints) -> tuple[npt.NDArray[np.uint8], Mask]:
        """Rows of *count* tokens from token *first* on, ``XX XX …`` (hex, single spaces).

        Also which rows are written so; the others are zero.
        """
        starts = self.starts[np.where(count > 0, first, 0)] if len(self.starts) else first
        return self._hex_pairs(starts, count, 3)

    def _hex_pairs(
        self, starts: Ints, count: Ints, step: int
    ) -> tuple[npt.NDArray[np.uint8], Mask]:
        """*count* hex pairs every *step* bytes from *starts* (step 3: a space between, a
        blank after the last)."""
        n = len(count)
        width = int(count.max()) if n else 0
        if not width:
            return np.zeros((n, 0), dtype=np.uint8), np.ones(n, dtype=np.bool_)
        padded = self._padded
        if len(padded) < len(self.buf) + _PAD + step * width:
            padded = np.concatenate((padded, np.zeros(step * width, np.uint8)))
        chars = _rows_of(padded, step * width)[starts + _PAD].reshape(n, width, step)
        high = _HEX_VALUES[chars[:, :, 0]]
        low = _HEX_VALUES[chars[:, :, 1]]
        column = np.arange(width)
        used = column < count[:, None]
        fine = (high < 16) & (low < 16)
        if step == 3:  # between bytes a single space; after the last one a blank or the end
            last = column == count[:, None] - 1
            fine &= np.where(last, chars[:, :, 2] <= 32, chars[:, :, 2] == 32)
        good: Mask = np.asarray((fine | ~used).all(axis=1))
        data = np.where(used & good[:, None], (high << 4) | low, np.uint8(0))
        return data.astype(np.uint8), good


def _text(row: npt.NDArray[np.uint8]) -> str:
    return row.tobytes().rstrip(b"\0").decode("latin-1")


def _rows_of(buf: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """Every *width* bytes of *buf* that follow one another, as rows of a view (no copy)."""
    rows = max(len(buf) - width + 1, 0)
    return np.ndarray((rows, width), dtype=np.uint8, buffer=buf, strides=(1, 1))


def _window(
    padded: npt.NDArray[np.uint8], starts: Ints, ends: Ints, width: int
) -> tuple[npt.NDArray[np.uint8], Mask]:
    """The last *width* (<= ``_PAD``) bytes of each token, and which belong to it.

    *padded* is the text after ``_PAD`` zero bytes; *starts* and *ends* index the text.
    """
    chars = _rows_of(padded, width)[ends + (_PAD - width)]
    sizes = ends - starts
    if len(sizes) and int(sizes.min()) >= width:  # all as long as the window (or longer)
        return chars, np.ones((1, width), dtype=np.bool_)
    return chars, np.arange(width) >= (width - sizes)[:, None]


def _rows_below(values: npt.NDArray[np.uint8], limit: int) -> Mask:
    """Which rows have every value below *limit* (one pass when all do)."""
    if int(values.max(initial=0)) < limit:
        return np.ones(len(values), dtype=np.bool_)
    return np.asarray((values < limit).all(axis=1))


def _rows_equal(chars: npt.NDArray[np.uint8], word: bytes) -> Mask:
    """Which rows of *chars* (contiguous, as wide as *word*) are *word*."""
    if len(word) in (1, 2, 4, 8):
        kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[len(word)]
        as_int = np.ascontiguousarray(chars).view(kind)[:, 0]
        return np.asarray(as_int == np.frombuffer(word, dtype=kind)[0])
    return np.asarray((chars == np.frombuffer(word, dtype=np.uint8)).all(axis=1))


def _decimal(
    padded: npt.NDArray[np.uint8], starts: Ints, ends: Ints, present: Mask
) -> tuple[npt.NDArray[np.float64], Mask, int]:
    """``float()`` of tokens of digits with a point at the same place from the end (or none).

    Also which tokens are that, and how many digits follow the point.
    """
    n = len(starts)
    if not n:
        return np.zeros(0), np.zeros(0, dtype=np.bool_), 0
    sizes = ends - starts
    width = min(max(int(sizes.max()), 1), _ONE_BIG)
    chars, inside = _window(padded, starts, ends, width)
    # The point's place from the end: the most common one among the tokens present.
    point_at = (chars == ord(".")) & inside
    places = width - 1 - np.argmax(point_at, axis=1)
    pointed = present & point_at.any(axis=1)
    decimals = int(np.bincount(places[pointed]).argmax()) if pointed.any() else 0
    ok = present & (sizes > 0) & (sizes <= width) & (sizes - (1 if decimals else 0) <= 18)
    value = np.where(inside, chars - np.uint8(48), np.uint8(0))
    weights = _POW10[-width:].copy()
    if decimals:  # the point's column weighs nothing, the digits left of it a tenth
        point = width - 1 - decimals
        ok &= (chars[:, point] == ord(".")) & (sizes > decimals + 1)
        value[:, point] = 0
        weights[:point] //= 10
        weights[point] = 0
    ok &= _rows_below(value, 10)
    whole = value.astype(np.int64) @ weights
    ok &= whole <= _EXACT
    return whole.astype(np.float64) / float(10**decimals), ok, decimals


def byte_rows(
    joined: bytes, have: npt.NDArray[np.integer], take: npt.NDArray[np.integer] | None = None
) -> npt.NDArray[np.uint8]:
    """Zero-padded rows of the bytes in *joined*: ``have[i]`` bytes for row ``i``.

    With *take*, row ``i`` keeps only its first ``take[i]`` bytes (``<= have[i]``).
    """
    n = len(have)
    flat = np.frombuffer(joined, dtype=np.uint8)
    width = int(have.max()) if n else 0
    if n and int(have.min()) == width:
        data = flat.reshape(n, width).copy()
    else:
        data = np.zeros((n, width), dtype=np.uint8)
        data[np.arange(width) < have[:, None]] = flat
    if take is not None:
        width = int(take.max()) if n else 0
        data = np.ascontiguousarray(data[:, :width])
        data[np.arange(width) >= take[:, None]] = 0
    return data
