"""Fields of text log lines to numpy arrays, each value exactly what Python makes of it.

The fast text readers (:mod:`vehicle_agent.logs.text`) get a block's fields
either as lists of strings (from a regular expression) or as :class:`Tokens`,
the blank-separated tokens of the whole block found with numpy without making
a Python object per token. Either way the numbers are parsed here in bulk:

- decimal numbers (``digits[.digits]``) exactly as ``float()`` parses them:
  the digits make an integer ``N <= 2**53`` and ``N / 10**k`` in float64 is the
  correctly rounded quotient of two exact doubles, the same double as the
  correctly rounded ``float()``;
- hex and decimal integers of a few digits, data bytes written in hex.

A parser of :class:`Tokens` fields also says which tokens are well formed, so
that a reader hands the other lines to its port of python-can's line parser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs.columns import Channel

__all__ = [
    "Tokens",
    "byte_rows",
    "decimals",
    "encode_channels",
    "hex_ints",
    "lookup",
]

Ints = npt.NDArray[np.intp]
Mask = npt.NDArray[np.bool_]

_HEX_VALUES = np.full(256, 16, dtype=np.uint8)  # 16: not a hex digit
for _digit in "0123456789abcdefABCDEF":
    _HEX_VALUES[ord(_digit)] = int(_digit, 16)
_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10**18 .. 10**0
_POW16 = 16 ** np.arange(7, -1, -1, dtype=np.uint64)  # 16**7 .. 16**0
_EXACT = 2**53  # every integer up to here is a double
_ONE_BIG = 19  # longest decimal token worth a look (18 digits and the point)
_PAD = 24  # zero bytes around a block's text, so that windows stay inside
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

    def field(self, index: int) -> tuple[Ints, Ints, Mask]:
        """Start and end offsets of each line's token *index*, and which lines have one."""
        present = self.count > index
        if not len(self.starts):
            zeros = np.zeros(self.lines, dtype=np.intp)
            return zeros, zeros, present
        token = np.where(present, self.first + index, 0)
        return self.starts[token], self.ends[token], present

    def equals(self, index: int, word: bytes) -> Mask:
        """Which lines' token *index* is *word*."""
        starts, ends, present = self.field(index)
        chars, _ = _window(self._padded, starts, ends, len(word))
        sized: Mask = ends - starts == len(word)
        return present & sized & _rows_equal(chars, word)

    def code(self, index: int) -> tuple[npt.NDArray[np.uint16], Mask]:
        """Token *index* of two characters as a big-endian 16-bit code; which are two long."""
        starts, ends, present = self.field(index)
        chars, _ = _window(self._padded, starts, ends, 2)
        codes = ((chars[:, 0].astype(np.uint16) << 8) | chars[:, 1]).astype(np.uint16)
        sized: Mask = ends - starts == 2
        return codes, present & sized

    def digits(self, index: int, most: int) -> tuple[npt.NDArray[np.int64], Mask]:
        """Token *index* as a decimal integer of 1 to *most* (< 19) digits; which are."""
        starts, ends, present = self.field(index)
        chars, inside = _window(self._padded, starts, ends, most)
        value = np.where(inside, chars - np.uint8(48), np.uint8(0))
        ok = present & (ends - starts <= most) & _rows_below(value, 10)
        return value.astype(np.int64) @ _POW10[-most:], ok

    def hex(self, index: int) -> tuple[npt.NDArray[np.uint32], Ints, Mask]:
        """Token *index* as 1 to 8 hex digits: value, number of digits, which are."""
        starts, ends, present = self.field(index)
        chars, inside = _window(self._padded, starts, ends, 8)
        value = np.where(inside, _HEX_VALUES[chars], np.uint8(0))
        ok = present & (ends - starts <= 8) & _rows_below(value, 16)
        number = value.astype(np.uint64) @ _POW16
        return number.astype(np.uint32), ends - starts, ok

    def decimal(self, index: int, among: Mask) -> tuple[npt.NDArray[np.float64], Mask]:
        """Token *index* as ``float()`` reads ``digits[.digits]``; which are that.

        The place of the point is taken from the first of the lines *among*.
        """
        starts, ends, present = self.field(index)
        return _decimal(self._padded, starts, ends, present & among)

    def byte_matrix(self, first: Ints, count: Ints) -> tuple[npt.NDArray[np.uint8], Mask]:
        """Rows of *count* tokens from token *first* on, ``XX XX …`` (hex, single spaces).

        Also which rows are written so; the others are zero.
        """
        n = len(count)
        width = int(count.max()) if n else 0
        if not width:
            return np.zeros((n, 0), dtype=np.uint8), np.ones(n, dtype=np.bool_)
        padded = self._padded
        if len(padded) < len(self.buf) + _PAD + 3 * width:
            padded = np.concatenate((padded, np.zeros(3 * width, np.uint8)))
        starts = self.starts[np.where(count > 0, first, 0)] + _PAD
        chars = _rows_of(padded, 3 * width)[starts].reshape(n, width, 3)
        high = _HEX_VALUES[chars[:, :, 0]]
        low = _HEX_VALUES[chars[:, :, 1]]
        column = np.arange(width)
        used = column < count[:, None]
        # Between bytes a single space; after the last one a blank (or the end).
        after = np.where(column < count[:, None] - 1, chars[:, :, 2] == 32, chars[:, :, 2] <= 32)
        good: Mask = np.asarray((((high < 16) & (low < 16) & after) | ~used).all(axis=1))
        data = np.where(used & good[:, None], (high << 4) | low, np.uint8(0))
        return data.astype(np.uint8), good


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
) -> tuple[npt.NDArray[np.float64], Mask]:
    """``float()`` of tokens of digits with a point at the same place from the end (or none)."""
    n = len(starts)
    if not n:
        return np.zeros(0), np.zeros(0, dtype=np.bool_)
    sizes = ends - starts
    width = min(int(sizes.max()), _ONE_BIG)
    chars, inside = _window(padded, starts, ends, width)
    # The point's place from the end, from the first well-formed line's token.
    sample = int(np.argmax(present))
    text = padded[starts[sample] + _PAD : ends[sample] + _PAD].tobytes()
    decimals = len(text) - 1 - text.find(b".") if b"." in text else 0
    if len(text) > width:
        return np.zeros(n), np.zeros(n, dtype=np.bool_)
    value = np.where(inside, chars - np.uint8(48), np.uint8(0))
    weights = _POW10[-width:].copy()
    ok = present & (sizes - (1 if decimals else 0) <= 18)
    if decimals:  # the point's column weighs nothing, the digits left of it a tenth
        point = width - 1 - decimals
        ok &= (chars[:, point] == ord(".")) & (sizes > decimals + 1)
        value[:, point] = 0
        weights[:point] //= 10
        weights[point] = 0
    ok &= _rows_below(value, 10)
    whole = value.astype(np.int64) @ weights
    ok &= whole <= _EXACT
    return whole.astype(np.float64) / float(10**decimals), ok


def decimals(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """``float(text)`` for texts of digits, a point and digits (as the shapes check)."""
    n = len(texts)
    sizes = np.fromiter(map(len, texts), dtype=np.intp, count=n)
    ends = np.cumsum(sizes + 1) - 1
    text = np.frombuffer(" ".join(texts).encode("ascii"), dtype=np.uint8)
    padded = np.concatenate((np.zeros(_PAD, np.uint8), text))
    values, ok = _decimal(padded, ends - sizes, ends, np.ones(n, dtype=np.bool_))
    if ok.all():
        return values
    return np.fromiter(map(float, texts), dtype=np.float64, count=n)


def hex_ints(texts: Sequence[str], lengths: Ints) -> npt.NDArray[np.uint32]:
    """``int(text, 16)`` for each text of 1 to 8 hex digits (as the shapes check)."""
    values = _HEX_VALUES[np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)]
    ends = np.cumsum(lengths)
    shifts = (np.repeat(ends, lengths) - np.arange(1, len(values) + 1)) * 4
    wide = values.astype(np.uint32) << shifts.astype(np.uint32)
    return np.add.reduceat(wide, ends - lengths).astype(np.uint32)


def lookup(
    texts: Sequence[str], table: dict[str, int], dtype: type[np.generic]
) -> npt.NDArray[Any]:
    """``table[text]`` for each text, as an array (one look-up when all texts are equal)."""
    n = len(texts)
    first = texts[0]
    if texts.count(first) == n:
        return np.full(n, table[first], dtype=dtype)
    return np.fromiter(map(table.__getitem__, texts), dtype=dtype, count=n)


def encode_channels(
    texts: Sequence[str], convert: Callable[[str], Channel]
) -> tuple[npt.NDArray[np.int32], list[Channel]]:
    """Channel codes and distinct channels for channel texts, each converted once."""
    n = len(texts)
    first = texts[0]
    if texts.count(first) == n:
        return np.zeros(n, dtype=np.int32), [convert(first)]
    distinct = list(dict.fromkeys(texts))
    merged: dict[Channel, int] = {}
    index = {text: merged.setdefault(convert(text), len(merged)) for text in distinct}
    codes = np.fromiter(map(index.__getitem__, texts), dtype=np.int32, count=n)
    return codes, list(merged)


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
