"""Where a signal's bits sit in a payload, and extracting them for many frames at once.

:func:`check_layout` rejects the layouts cantools' bit formats shift around (the
message is then decoded frame by frame, see :class:`Unsupported`);
:class:`Windows` reads 8-byte windows of the frames' payloads as integers and
:class:`SignalPlan` turns a window into a signal's raw values (a shift, a mask, a
sign extension, an IEEE reinterpretation), its scaled values and label codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cantools.database.can import Signal

from vehicle_agent.vector.model import AnyArray, IntArray
from vehicle_agent.vector.values import Scaler

__all__ = ["SignalPlan", "Unsupported", "Windows", "check_layout", "network_start"]


_FLOAT_VIEWS = {16: (np.uint16, np.float16), 32: (np.uint32, np.float32)}


class Unsupported(Exception):
    """The message cannot be vectorised exactly; the reason is the message."""


def network_start(signal: Signal) -> int:
    """A big-endian signal's first bit, counted from the payload's most significant bit."""
    start = int(signal.start)
    return 8 * (start // 8) + (7 - start % 8)


def check_layout(signals: Sequence[Signal], length: int) -> None:
    """Raise unless cantools' bit formats place every signal of a codec node where the DBC says.

    cantools walks little-endian signals in reverse codec order and big-endian ones
    by network bit, and silently drops a negative padding: overlapping or unsorted
    signals then land elsewhere, and a signal past the end fails to unpack.
    """
    total = 8 * length
    end = total
    for signal in reversed(signals):
        if signal.byte_order != "little_endian":
            continue
        if signal.start < 0 or end - (signal.start + signal.length) < 0:
            raise Unsupported(f"signal {signal.name} overlaps or leaves the message")
        end = signal.start
    position = 0
    big = sorted((s for s in signals if s.byte_order == "big_endian"), key=network_start)
    for signal in big:
        first = network_start(signal)
        if signal.start < 0 or first - position < 0:
            raise Unsupported(f"signal {signal.name} overlaps or leaves the message")
        position = first + signal.length
    if position > total:
        raise Unsupported("a big-endian signal leaves the message")


class Windows:
    """8-byte windows of the payloads of a message's frames, as native uint64.

    A message of up to 8 bytes has one window (byte 0); a longer one has a window
    at each signal's first byte, read from payloads padded with 8 zero bytes.
    """

    __slots__ = ("_block", "_cache")

    def __init__(self, data: npt.NDArray[np.uint8], rows: IntArray, length: int) -> None:
        width = int(data.shape[1]) if data.ndim == 2 else 0
        self._cache: dict[tuple[int, bool], npt.NDArray[np.uint64]] = {}
        if length <= 8 and width == 8 and data.flags.c_contiguous:
            # Classic CAN: gather whole 8-byte rows as integers. Bytes past the
            # message length (of longer frames) only reach bits no signal reads.
            little = data.view("<u8").reshape(-1)[rows].astype(np.uint64, copy=False)
            self._cache[(0, False)] = little
            self._block = data[:0]
            return
        if length == 8 and width == 8:
            block = data[rows]
        else:
            size = 8 if length <= 8 else length + 8
            block = np.zeros((rows.shape[0], size), dtype=np.uint8)
            if length:
                block[:, :length] = data[rows, :length]
        self._block = block

    def get(self, first_byte: int, big: bool) -> npt.NDArray[np.uint64]:
        """The window at *first_byte*, big-endian when *big*; callers must not modify it."""
        found = self._cache.get((first_byte, big))
        if found is None and not self._block.shape[0]:  # classic CAN, big-endian
            found = self._cache[(0, False)].byteswap()
            self._cache[(0, True)] = found
        elif found is None:
            part = self._block[:, first_byte : first_byte + 8]
            if first_byte or part.shape[1] != self._block.shape[1]:
                part = np.ascontiguousarray(part)
            found = part.view(">u8" if big else "<u8").reshape(-1).astype(np.uint64, copy=False)
            self._cache[(first_byte, big)] = found
        return found


@dataclass(slots=True)
class SignalPlan:
    """How one signal is extracted and scaled, vectorised."""

    signal: Signal
    output: int | None  # column index, None when only needed as a multiplexer
    first_byte: int
    big: bool
    shift: np.uint64
    mask: np.uint64 | None
    kind: str  # "u", "s" or "f"
    bits: int
    scaler: Scaler
    label_keys: AnyArray | None
    label_codes: npt.NDArray[np.int32] | None

    def raw(self, windows: Windows, subset: IntArray | None) -> AnyArray:
        """The raw values; may be a view of the windows (shared by every signal)."""
        value = windows.get(self.first_byte, self.big)
        # One new array at most, then worked on in place: fewer large allocations,
        # whose fresh pages cost page faults.
        own = subset is not None
        if own:
            value = value[subset]
        if self.shift:
            value = np.right_shift(value, self.shift, out=value if own else None)
            own = True
        if self.mask is not None:
            value = np.bitwise_and(value, self.mask, out=value if own else None)
        if self.kind == "u":
            return value if self.bits == 64 else value.view(np.int64)
        if self.kind == "s":
            signed = value.view(np.int64)
            if self.bits == 64:
                return signed
            sign = np.int64(1 << (self.bits - 1))
            signed ^= sign  # a new array here: a signal under 64 bits is masked
            signed -= sign
            return signed
        if self.bits == 64:
            return value.view(np.float64)
        unsigned, floating = _FLOAT_VIEWS[self.bits]
        return value.astype(unsigned).view(floating).astype(np.float64)

    def labels(self, raw: AnyArray) -> npt.NDArray[np.int32] | None:
        keys, codes = self.label_keys, self.label_codes
        if keys is None or codes is None:
            return None
        if keys.shape[0] == 0:
            return np.full(raw.shape[0], -1, dtype=np.int32)
        where = np.searchsorted(keys, raw)
        where = np.minimum(where, keys.shape[0] - 1)
        hit = keys[where] == raw
        return np.where(hit, codes[where], np.int32(-1)).astype(np.int32, copy=False)
