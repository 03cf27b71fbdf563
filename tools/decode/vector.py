"""Vectorised exact decoding: chunks of frame columns to columns of signal values.

:class:`VectorDecoder` decodes a chunk of frames (see
:class:`vehicle_agent.logs.FrameColumns`) message by message instead of frame by
frame: the frames of a chunk are grouped by the DBC message they match, then
each signal of a message is extracted for all its frames at once with numpy
(one 8-byte window per frame read as a little- or big-endian integer, a shift, a
mask, a sign extension, an IEEE reinterpretation), and scaled with cantools'
own scale and offset. The result is *equal* to what
``message.decode(data, decode_choices=..., scaling=...)`` gives for every frame:

- integers stay integers and floats floats, with the same values: the integer
  arithmetic ``raw * scale + offset`` is done modulo 2**64 in a dtype chosen from
  the signal's range (so it is exact), float arithmetic in float64 with the
  operations and rounding Python uses (``float(raw) * scale + float(offset)``);
  results no fixed-width dtype can hold fall back to Python's own arithmetic;
- multiplexed messages (extended multiplexing included) walk cantools' own codec
  tree: the multiplexer column is evaluated (its value as cantools computes it,
  scaled and through choices), then each branch decodes its subset of frames; a
  multiplexer value without a branch fails the frame, as in cantools;
- a payload shorter than the message fails the frame (cantools' DecodeError), a
  longer one is cut; remote and error frames are skipped;
- choices give labels (as cantools' ``decode_choices=True`` does) in a separate
  column of label codes, next to the numeric value.

A message whose layout cannot be reproduced exactly this way (overlapping or
out-of-range signals, which cantools' bit formats shift around; signals wider
than 64 bits or straddling more than 8 bytes; float signals with choices;
unusual conversions) is decoded by cantools frame by frame instead, so results
never differ; :attr:`OutputMessage.vectorised` says which path a message takes.

Frames are matched to messages as the agent does (:mod:`vehicle_agent.decoding`):
by identifier and the frame's real extended flag, by parameter group number for
the extended frames of a J1939 database, the first DBC source that knows a
frame winning, optionally per channel.

Pure compute module: numpy and cantools (plus the pure J1939 rule of
:mod:`vehicle_agent.catalog`); no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import (
    IdentityConversion,
    LinearConversion,
    LinearIntegerConversion,
    NamedSignalConversion,
)
from cantools.database.errors import DecodeError, EncodeError
from cantools.database.namedsignalvalue import NamedSignalValue

from vehicle_agent.catalog import j1939_pgn

__all__ = [
    "ERROR",
    "EXTENDED",
    "FRAME_ERRORS",
    "REMOTE",
    "Column",
    "DbcSource",
    "DecodeCounts",
    "Engine",
    "Frames",
    "MessageBatch",
    "OutputMessage",
    "OutputSignal",
    "VectorDecoder",
    "message_names",
]

#: Flag bits of the frame columns; the same values as :mod:`vehicle_agent.logs.columns`
#: (kept here so that this module needs no log reader; a test checks they agree).
EXTENDED = 0x01
REMOTE = 0x02
ERROR = 0x04

#: What cantools raises for one frame's payload: a wrong length, an unknown
#: multiplexer value, a failed unpack (DecodeError); a choice or multiplexer value
#: that cannot become an int (ValueError, OverflowError, or EncodeError/KeyError
#: from a multiplexer label). The frame counts as a decode error.
FRAME_ERRORS: tuple[type[Exception], ...] = (
    DecodeError,
    EncodeError,
    KeyError,
    ValueError,
    OverflowError,
)

Engine = Literal["vector", "cantools"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
AnyArray = npt.NDArray[Any]

_U64 = np.dtype(np.uint64)
_I64 = np.dtype(np.int64)
_F64 = np.dtype(np.float64)
_OBJECT = np.dtype(object)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_FLOAT_BITS = (16, 32, 64)
_FLOAT_VIEWS = {16: (np.uint16, np.float16), 32: (np.uint32, np.float32)}
# Target codes for frames that decode no message.
_UNKNOWN = -1
_NOT_SELECTED = -2


class Frames(Protocol):
    """The columns of a chunk of frames (what :class:`~vehicle_agent.logs.FrameColumns` has)."""

    @property
    def timestamp(self) -> npt.NDArray[np.float64]: ...
    @property
    def arbitration_id(self) -> npt.NDArray[np.uint32]: ...
    @property
    def flags(self) -> npt.NDArray[np.uint8]: ...
    @property
    def length(self) -> npt.NDArray[np.uint8]: ...
    @property
    def data(self) -> npt.NDArray[np.uint8]: ...
    @property
    def channel(self) -> npt.NDArray[np.int32]: ...
    @property
    def channels(self) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class DbcSource:
    """One database applied to the frames of a log.

    ``channel`` limits it to the frames whose channel, as text, equals it (None:
    every frame); ``j1939`` matches extended frames by parameter group number.
    """

    database: Database
    name: str
    j1939: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class OutputSignal:
    """One output column: a signal's name, the numpy dtype of its values, its labels.

    ``dtype`` is int64, uint64 or float64, or object for integers no fixed-width
    type holds (a 64-bit raw value times a large integer scale). ``labels`` (only
    when decoding choices) are the texts of the signal's choices; a batch gives
    indices into them.
    """

    name: str
    dtype: np.dtype[Any]
    labels: tuple[str, ...] | None
    unit: str = ""
    #: Whether float64 holds every value exactly (floats, integers within 2**53).
    float_exact: bool = True


@dataclass(frozen=True, slots=True)
class OutputMessage:
    """A decoded message: its unique display name and its output signals, in DBC order."""

    index: int
    name: str
    message: Message
    signals: tuple[OutputSignal, ...]
    vectorised: bool
    #: Why the message is decoded frame by frame by cantools (None when vectorised).
    fallback_reason: str | None


@dataclass(frozen=True, slots=True)
class Column:
    """One signal's values for the frames of a batch.

    ``valid`` is None when every frame has the signal (a multiplexed signal is only
    in the frames of its branch); ``label_codes`` index :attr:`OutputSignal.labels`,
    -1 where the value has no choice.
    """

    signal: OutputSignal
    values: AnyArray
    valid: BoolArray | None
    label_codes: npt.NDArray[np.int32] | None

    def take(self, keep: BoolArray) -> Column:
        return Column(
            self.signal,
            self.values[keep],
            None if self.valid is None else self.valid[keep],
            None if self.label_codes is None else self.label_codes[keep],
        )

    def count(self) -> int:
        return int(self.values.shape[0]) if self.valid is None else int(self.valid.sum())


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """The decoded frames of one message in one chunk, in log order.

    ``rows`` are the frames' positions in the chunk; ``channel`` indexes
    ``channels``, the chunk's channels as the log reader gives them.
    """

    message: OutputMessage
    rows: IntArray
    timestamp: npt.NDArray[np.float64]
    channel: npt.NDArray[np.int32]
    channels: Sequence[object]
    columns: tuple[Column, ...]

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(slots=True)
class DecodeCounts:
    """What happened to the frames given to a decoder; each frame counts once.

    ``frames == skipped + unknown_ids + not_selected + decode_errors + frames_decoded``.
    """

    frames: int = 0
    frames_decoded: int = 0
    samples: int = 0
    skipped: int = 0  # remote and error frames
    unknown_ids: int = 0
    not_selected: int = 0
    decode_errors: int = 0
    by_message: dict[str, int] = field(default_factory=dict)
    errors_by_message: dict[str, int] = field(default_factory=dict)


def message_names(sources: Sequence[DbcSource]) -> dict[str, Message]:
    """Every message of the sources by a unique display name, in source and file order.

    A message keeps its DBC name unless an earlier source already used it, then it
    becomes ``"<source name>:<message>"``. A database given twice (e.g. for two
    channels) lists its messages once.
    """
    names: dict[str, Message] = {}
    seen: set[int] = set()
    for source in sources:
        for message in source.database.messages:
            if id(message) in seen:
                continue
            seen.add(id(message))
            name = message.name
            if name in names:
                name = f"{source.name}:{message.name}"
                suffix = 2
                while name in names:
                    name = f"{source.name}:{message.name}~{suffix}"
                    suffix += 1
            names[name] = message
    return names


class VectorDecoder:
    """Decode chunks of frames with a list of DBC sources, tried in order.

    ``selection`` maps display names (see :func:`message_names`) to the signals to
    output (None: all of them); messages left out are matched but not decoded
    (``not_selected``). None selects everything. ``choices`` adds label codes for
    signals with choices (cantools' ``decode_choices=True``, including how it
    picks multiplexer branches); ``scaling=False`` gives raw values.
    ``engine="cantools"`` decodes every message frame by frame with cantools.
    """

    def __init__(
        self,
        sources: Sequence[DbcSource],
        *,
        choices: bool = False,
        scaling: bool = True,
        selection: Mapping[str, Collection[str] | None] | None = None,
        engine: Engine = "vector",
    ) -> None:
        self.sources = tuple(sources)
        self.choices = choices
        self.scaling = scaling
        self.engine: Engine = engine
        self.counts = DecodeCounts()
        names = message_names(self.sources)
        if selection is not None:
            unknown = sorted(set(selection) - set(names))
            if unknown:
                raise ValueError(f"unknown messages: {', '.join(unknown)}")
        plans: list[_MessagePlan] = []
        self._plan_of: dict[int, int] = {}
        for name, message in names.items():
            if selection is not None and name not in selection:
                continue
            wanted = None if selection is None else selection[name]
            plan = _MessagePlan(len(plans), name, message, wanted, choices, scaling, engine)
            self._plan_of[id(message)] = len(plans)
            plans.append(plan)
        self._plans = plans
        #: The selected messages, in source and file order.
        self.outputs: tuple[OutputMessage, ...] = tuple(p.output for p in plans)
        self._routes = tuple(_Route(source, self._plan_of) for source in self.sources)
        self._by_channel = any(source.channel is not None for source in self.sources)
        self._targets: dict[tuple[str | None, int, bool], int] = {}
        # Keys seen so far (sorted) and their targets: looking a chunk's keys up in
        # them costs a fraction of sorting the chunk. Channel codes are the chunk's
        # own, so with channel-limited sources they hold while the channels do.
        self._known_keys = np.empty(0, dtype=np.uint64)
        self._known_targets = np.empty(0, dtype=np.int32)
        self._known_channels: tuple[object, ...] = ()

    def decode(self, frames: Frames) -> list[MessageBatch]:
        """The decoded messages of one chunk (one batch per message with decoded frames)."""
        counts = self.counts
        n = int(frames.timestamp.shape[0])
        counts.frames += n
        if n == 0:
            return []
        flags = frames.flags
        skip = (flags & (REMOTE | ERROR)) != 0
        skipped = int(np.count_nonzero(skip))
        counts.skipped += skipped
        if skipped == n:
            return []
        # One integer key per frame: id, extended flag, and the chunk's channel code
        # when a source is limited to a channel; each distinct key is resolved once.
        key = frames.arbitration_id.astype(np.uint64)
        key |= (flags & EXTENDED).astype(np.uint64) << np.uint64(32)
        if self._by_channel:
            key |= frames.channel.astype(np.uint64) << np.uint64(33)
        target = self._lookup(key, frames.channels)
        target[skip] = -3  # neither unknown nor selected: already counted
        per_target = np.bincount(target + 3, minlength=3)
        counts.unknown_ids += int(per_target[_UNKNOWN + 3])
        counts.not_selected += int(per_target[_NOT_SELECTED + 3])
        present = np.flatnonzero(per_target[3:]).tolist()
        if not present:
            return []
        groups: list[tuple[int, IntArray]] = []
        if len(present) <= 16:
            # A few messages: one comparison pass each beats sorting the chunk.
            groups = [(t, np.flatnonzero(target == t)) for t in present]
        else:
            order = np.argsort(
                target.astype(np.int16) if len(self._plans) < 32_000 else target, kind="stable"
            )
            ends = np.cumsum(per_target)
            groups = [(t, order[ends[t + 2] : ends[t + 3]]) for t in present]
        batches: list[MessageBatch] = []
        # Float payloads may hold signalling NaNs and scaling may overflow to inf,
        # exactly as in cantools' Python floats: numpy's warnings say nothing here.
        with np.errstate(all="ignore"):
            for plan_index, rows in groups:
                batch = self._plans[plan_index].decode(frames, rows, counts)
                if batch is not None:
                    batches.append(batch)
        return batches

    def _lookup(
        self, key: npt.NDArray[np.uint64], channels: Sequence[object]
    ) -> npt.NDArray[np.int32]:
        """Each frame's target: a plan index, or _UNKNOWN / _NOT_SELECTED."""
        if self._by_channel and tuple(channels) != self._known_channels:
            self._known_keys = np.empty(0, dtype=np.uint64)
            self._known_targets = np.empty(0, dtype=np.int32)
            self._known_channels = tuple(channels)
        known = self._known_keys
        if known.shape[0]:
            where = np.minimum(np.searchsorted(known, key), known.shape[0] - 1)
            missing = known[where] != key
        else:
            missing = np.ones(key.shape[0], dtype=np.bool_)
        if missing.any():
            new = np.unique(key[missing])
            targets = [self._target(k, channels) for k in new.tolist()]
            keys = np.concatenate((known, new))
            values = np.concatenate((self._known_targets, np.array(targets, dtype=np.int32)))
            order = np.argsort(keys)
            self._known_keys, self._known_targets = keys[order], values[order]
            known = self._known_keys
            where = np.searchsorted(known, key)
        found: npt.NDArray[np.int32] = self._known_targets[where]
        return found

    def _target(self, key: int, channels: Sequence[object]) -> int:
        ident = key & 0xFFFFFFFF
        extended = bool((key >> 32) & 1)
        channel = None
        if self._by_channel:
            value = channels[key >> 33]
            channel = None if value is None else str(value)
        cache_key = (channel, ident, extended)
        found = self._targets.get(cache_key)
        if found is None:
            found = _UNKNOWN
            for route in self._routes:
                hit = route.find(channel, ident, extended)
                if hit is not None:
                    found = hit
                    break
            self._targets[cache_key] = found
        return found


class _Route:
    """The lookups of one source: by id (standard, extended) or by PGN (J1939)."""

    def __init__(self, source: DbcSource, plan_of: Mapping[int, int]) -> None:
        self.channel = source.channel
        self.by_id: dict[tuple[int, bool], int] = {}
        self.by_pgn: dict[int, int] | None = {} if source.j1939 else None
        for message in source.database.messages:
            target = plan_of.get(id(message), _NOT_SELECTED)
            # The first message wins when two share an id (or a PGN).
            if message.is_extended_frame and self.by_pgn is not None:
                self.by_pgn.setdefault(j1939_pgn(message.frame_id), target)
            else:
                self.by_id.setdefault((message.frame_id, message.is_extended_frame), target)

    def find(self, channel: str | None, ident: int, extended: bool) -> int | None:
        if self.channel is not None and self.channel != channel:
            return None
        if extended and self.by_pgn is not None:
            return self.by_pgn.get(j1939_pgn(ident))
        return self.by_id.get((ident, extended))


# --- per message ---------------------------------------------------------------


class _Unsupported(Exception):
    """The message cannot be vectorised exactly; the reason is the message."""


def _conversion_of(signal: Signal) -> Any:
    conversion = signal.conversion
    if type(conversion) is NamedSignalConversion:
        return conversion._conversion
    return conversion


def _raw_range(signal: Signal) -> tuple[int, int]:
    bits = max(int(signal.length), 1)
    if signal.is_signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _int_dtype(low: int, high: int) -> np.dtype[Any]:
    if low >= _INT64_MIN and high <= _INT64_MAX:
        return _I64
    if low >= 0 and high <= _UINT64_MAX:
        return _U64
    return _OBJECT


def _output_dtype(signal: Signal, scaling: bool) -> np.dtype[Any]:
    """The dtype that holds every value cantools can give for *signal*, exactly.

    Integer results are those of Python's int arithmetic on an integer raw value
    (identity conversions, or integer scale and offset); anything else is float.
    """
    if signal.conversion.is_float:
        return _F64
    low, high = _raw_range(signal)
    conversion = _conversion_of(signal)
    if not scaling or type(conversion) is IdentityConversion:
        return _int_dtype(low, high)
    scale, offset = conversion.scale, conversion.offset
    if type(scale) is int and type(offset) is int:
        ends = (low * scale + offset, high * scale + offset)
        return _int_dtype(min(ends), max(ends))
    return _F64


def _float_exact(signal: Signal, scaling: bool) -> bool:
    """Whether every value of *signal* converts to float64 exactly."""
    if _output_dtype(signal, scaling).kind == "f":
        return True
    low, high = _raw_range(signal)
    conversion = _conversion_of(signal)
    if scaling and type(conversion) is not IdentityConversion:
        ends = (
            low * conversion.scale + conversion.offset,
            high * conversion.scale + conversion.offset,
        )
        low, high = min(ends), max(ends)
    return low >= -(1 << 53) and high <= 1 << 53


def _network_start(signal: Signal) -> int:
    """A big-endian signal's first bit, counted from the payload's most significant bit."""
    start = int(signal.start)
    return 8 * (start // 8) + (7 - start % 8)


def _check_layout(signals: Sequence[Signal], length: int) -> None:
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
            raise _Unsupported(f"signal {signal.name} overlaps or leaves the message")
        end = signal.start
    position = 0
    big = sorted((s for s in signals if s.byte_order == "big_endian"), key=_network_start)
    for signal in big:
        first = _network_start(signal)
        if signal.start < 0 or first - position < 0:
            raise _Unsupported(f"signal {signal.name} overlaps or leaves the message")
        position = first + signal.length
    if position > total:
        raise _Unsupported("a big-endian signal leaves the message")


class _Windows:
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
            self._cache[(0, True)] = little.byteswap()
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
        found = self._cache.get((first_byte, big))
        if found is None:
            part = self._block[:, first_byte : first_byte + 8]
            if first_byte or part.shape[1] != self._block.shape[1]:
                part = np.ascontiguousarray(part)
            found = part.view(">u8" if big else "<u8").reshape(-1).astype(np.uint64, copy=False)
            self._cache[(first_byte, big)] = found
        return found


Scaler = Callable[[AnyArray], AnyArray]


@dataclass(slots=True)
class _SignalPlan:
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

    def raw(self, windows: _Windows, subset: IntArray | None) -> AnyArray:
        window = windows.get(self.first_byte, self.big)
        if subset is not None:
            window = window[subset]
        value = window >> self.shift if self.shift else window
        if self.mask is not None:
            value = value & self.mask
        if self.kind == "u":
            return value if self.bits == 64 else value.view(np.int64)
        if self.kind == "s":
            signed = value.view(np.int64)
            if self.bits == 64:
                return signed
            sign = np.int64(1 << (self.bits - 1))
            return (signed ^ sign) - sign
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


def _make_scaler(signal: Signal, scaling: bool, dtype: np.dtype[Any]) -> Scaler:
    """``raw -> raw * scale + offset`` as Python computes it, vectorised where exact."""
    conversion = _conversion_of(signal)
    if not scaling or type(conversion) is IdentityConversion:
        # Identity returns the raw value itself (a float -0.0 stays -0.0).
        if dtype == _OBJECT:
            return lambda raw: np.array(raw.tolist(), dtype=object)
        return lambda raw: raw
    scale, offset = conversion.scale, conversion.offset
    is_float = bool(signal.conversion.is_float)

    def python(raw: AnyArray) -> AnyArray:
        # cantools' own expression on Python numbers: the exact reference.
        return np.array([value * scale + offset for value in raw.tolist()], dtype=dtype)

    if is_float or type(scale) is float:
        # float(raw) * scale + float(offset): Python converts ints to float first
        # (correctly rounded, as numpy's int64/uint64 -> float64 cast is).
        scale_f, offset_f = np.float64(float(scale)), np.float64(float(offset))
        return lambda raw: raw.astype(np.float64, copy=False) * scale_f + offset_f
    low, high = _raw_range(signal)
    if type(offset) is int:
        # Integer result; arithmetic modulo 2**64 in the output dtype is exact
        # because that dtype holds every result.
        if dtype == _OBJECT:
            return python
        scale_m = dtype.type(scale % (1 << 64) if dtype == _U64 else _wrap64(scale))
        offset_m = dtype.type(offset % (1 << 64) if dtype == _U64 else _wrap64(offset))
        return lambda raw: raw.astype(dtype, copy=False) * scale_m + offset_m
    # Integer scale, float offset: the exact integer product, then one rounding.
    ends = (low * scale, high * scale)
    if min(ends) >= _INT64_MIN and max(ends) <= _INT64_MAX and high <= _INT64_MAX:
        scale_i, offset_f = np.int64(scale), np.float64(offset)
        return lambda raw: (raw.astype(np.int64) * scale_i).astype(np.float64) + offset_f
    return python


def _wrap64(value: int) -> int:
    """*value* modulo 2**64 as a signed 64-bit integer."""
    return ((value + (1 << 63)) % (1 << 64)) - (1 << 63)


@dataclass(slots=True)
class _Node:
    """One codec node of cantools' multiplexing tree, reduced to what is needed."""

    signals: list[_SignalPlan]
    # (multiplexer plan, branch node by multiplexer value, value-to-number function)
    muxes: list[tuple[_SignalPlan, dict[int, _Node | None], Callable[[int], int]]]


class _MessagePlan:
    """How one selected message decodes: vectorised, or by cantools frame by frame."""

    def __init__(
        self,
        index: int,
        name: str,
        message: Message,
        wanted: Collection[str] | None,
        choices: bool,
        scaling: bool,
        engine: Engine,
    ) -> None:
        self.message = message
        self.name = name
        self.choices = choices
        self.scaling = scaling
        self.length = int(message.length) if type(message.length) is int else -1
        chosen = [s for s in message.signals if wanted is None or s.name in wanted]
        signals = tuple(
            OutputSignal(
                s.name,
                _output_dtype(s, scaling),
                _labels(s) if choices and s.conversion.choices is not None else None,
                s.unit or "",
                _float_exact(s, scaling),
            )
            for s in chosen
        )
        self.column_of = {s.name: i for i, s in enumerate(signals)}
        self.root: _Node | None = None
        reason: str | None = "--engine cantools"
        if engine == "vector":
            try:
                self.root = self._compile(signals)
                reason = None
            except _Unsupported as exc:
                reason = str(exc)
        self.output = OutputMessage(index, name, message, signals, self.root is not None, reason)

    # -- compiling

    def _compile(self, outputs: tuple[OutputSignal, ...]) -> _Node:
        message = self.message
        if message.is_container:
            raise _Unsupported("container message")
        if self.length < 0:
            raise _Unsupported("message length is not an integer")
        codecs = message._codecs
        if codecs is None:
            raise _Unsupported("no codec")
        names = [s.name for s in message.signals]
        if len(set(names)) != len(names):
            raise _Unsupported("two signals share a name")
        node = self._compile_node(codecs, outputs)
        if node is None:
            return _Node([], [])
        return node

    def _compile_node(
        self, codec: Mapping[str, Any], outputs: tuple[OutputSignal, ...]
    ) -> _Node | None:
        """The node's plan, or None when it yields nothing selected and cannot fail."""
        signals: list[Signal] = list(codec["signals"])
        _check_layout(signals, self.length)
        multiplexers: Mapping[str, Mapping[int, Mapping[str, Any]]] = codec["multiplexers"]
        plans: list[_SignalPlan] = []
        muxes: list[tuple[_SignalPlan, dict[int, _Node | None], Callable[[int], int]]] = []
        by_name = {s.name: s for s in signals}
        output_plans: dict[str, _SignalPlan] = {}
        for signal in signals:
            column = self.column_of.get(signal.name)
            if column is not None:
                output_plans[signal.name] = self._signal_plan(signal, column, outputs[column])
                plans.append(output_plans[signal.name])
        for mux_name, branches in multiplexers.items():
            mux_signal = by_name[mux_name]
            if mux_signal.conversion.is_float:
                raise _Unsupported(f"float multiplexer {mux_name}")
            # An output multiplexer is decoded with the node's signals; otherwise it is
            # extracted only to pick branches.
            mux_plan = output_plans.get(mux_name) or self._signal_plan(mux_signal, None, None)
            children = {
                value: self._compile_node(child, outputs) for value, child in branches.items()
            }
            muxes.append((mux_plan, children, self._mux_number(mux_signal)))
        if not plans and not muxes:
            return None
        return _Node(plans, muxes)

    def _signal_plan(
        self, signal: Signal, column: int | None, output: OutputSignal | None
    ) -> _SignalPlan:
        if signal.byte_order not in ("little_endian", "big_endian"):
            raise _Unsupported(f"signal {signal.name} has byte order {signal.byte_order!r}")
        if type(signal.start) is not int or type(signal.length) is not int:
            raise _Unsupported(f"signal {signal.name} has a non-integer position")
        bits = signal.length
        if not 1 <= bits <= 64:
            raise _Unsupported(f"signal {signal.name} is {bits} bits long")
        is_float = bool(signal.conversion.is_float)
        if is_float and bits not in _FLOAT_BITS:
            raise _Unsupported(f"float signal {signal.name} is {bits} bits long")
        conversion = _conversion_of(signal)
        if type(conversion) not in (IdentityConversion, LinearConversion, LinearIntegerConversion):
            raise _Unsupported(f"signal {signal.name} has a {type(conversion).__name__}")
        if type(conversion.scale) not in (int, float) or type(conversion.offset) not in (
            int,
            float,
        ):
            raise _Unsupported(f"signal {signal.name} has a non-numeric scale or offset")
        if is_float and self.choices and signal.conversion.choices:
            # cantools looks float raw values up as int(raw) (NaN and inf raise).
            raise _Unsupported(f"float signal {signal.name} has choices")
        big = signal.byte_order == "big_endian"
        first_bit = _network_start(signal) if big else signal.start
        last_bit = first_bit + bits - 1
        first_byte = 0 if self.length <= 8 else first_bit // 8
        if last_bit // 8 - first_byte >= 8:
            raise _Unsupported(f"signal {signal.name} spans more than 8 bytes")
        relative = first_bit - 8 * first_byte
        shift = 64 - relative - bits if big else relative
        dtype = output.dtype if output is not None else _output_dtype(signal, self.scaling)
        keys = codes = None
        if output is not None and output.labels is not None:
            keys, codes = _label_lookup(signal, output.labels, bits == 64 and not is_float)
        return _SignalPlan(
            signal=signal,
            output=column,
            first_byte=first_byte,
            big=big,
            shift=np.uint64(shift),
            mask=None if bits == 64 else np.uint64((1 << bits) - 1),
            kind="f" if is_float else ("s" if signal.is_signed else "u"),
            bits=bits,
            scaler=_make_scaler(signal, self.scaling, dtype),
            label_keys=keys,
            label_codes=codes,
        )

    def _mux_number(self, signal: Signal) -> Callable[[int], int]:
        """The branch number cantools derives from one raw multiplexer value.

        Mirrors ``decode_data`` (scaling, choices) then ``Message._get_mux_number``
        (a choice goes back to a number through its label).
        """
        conversion = signal.conversion
        scaling, choices = self.scaling, self.choices

        def number(raw: int) -> int:
            value: object
            if scaling:
                value = conversion.raw_to_scaled(raw, choices)
            elif choices and conversion.choices and raw in conversion.choices:
                value = conversion.choices[raw]
            else:
                value = raw
            if isinstance(value, str | NamedSignalValue):
                return int(conversion.choice_to_number(str(value)))
            return int(value)

        return number

    # -- decoding

    def decode(self, frames: Frames, rows: IntArray, counts: DecodeCounts) -> MessageBatch | None:
        """Decode the frames at *rows* (ascending chunk positions) of this message."""
        length = self.length
        errors = 0
        if length > 0:
            short = frames.length[rows] < length
            errors = int(np.count_nonzero(short))
            if errors:
                rows = rows[~short]
        columns: list[Column | None]
        ok: BoolArray | None = None
        if rows.shape[0]:
            if self.root is not None:
                columns, ok = self._vector(frames.data, rows)
            else:
                columns, ok = self._cantools(frames, rows)
            if ok is not None:
                errors += int(rows.shape[0] - np.count_nonzero(ok))
                rows = rows[ok]
        if errors:
            counts.decode_errors += errors
            counts.errors_by_message[self.name] = (
                counts.errors_by_message.get(self.name, 0) + errors
            )
        decoded = int(rows.shape[0])
        if decoded == 0:
            return None
        result = tuple(self._finish(i, column, ok, decoded) for i, column in enumerate(columns))
        counts.frames_decoded += decoded
        counts.samples += sum(column.count() for column in result)
        counts.by_message[self.name] = counts.by_message.get(self.name, 0) + decoded
        return MessageBatch(
            message=self.output,
            rows=rows,
            timestamp=frames.timestamp[rows],
            channel=frames.channel[rows],
            channels=frames.channels,
            columns=result,
        )

    def _finish(self, index: int, column: Column | None, ok: BoolArray | None, size: int) -> Column:
        signal = self.output.signals[index]
        if column is None:  # in no branch of any decoded frame
            return Column(
                signal,
                np.zeros(size, dtype=signal.dtype),
                np.zeros(size, dtype=np.bool_),
                None if signal.labels is None else np.full(size, -1, dtype=np.int32),
            )
        return column if ok is None else column.take(ok)

    def _vector(
        self, data: npt.NDArray[np.uint8], rows: IntArray
    ) -> tuple[list[Column | None], BoolArray | None]:
        assert self.root is not None
        size = int(rows.shape[0])
        windows = _Windows(data, rows, self.length)
        state = _State(size, self.output.signals)
        self._run(self.root, windows, None, state)
        return state.columns(), state.ok

    def _run(self, node: _Node, windows: _Windows, subset: IntArray | None, state: _State) -> None:
        for plan in node.signals:
            raw = plan.raw(windows, subset)
            assert plan.output is not None
            state.put(plan.output, subset, plan.scaler(raw), plan.labels(raw))
        for mux, branches, number in node.muxes:
            raw = mux.raw(windows, subset)
            # The branch of each distinct multiplexer value, computed as cantools does;
            # a value without a branch (or that cantools cannot turn into a number)
            # fails its frames.
            distinct, inverse = np.unique(raw, return_inverse=True)
            keys = list(branches)
            slots: list[int] = []
            for value in distinct.tolist():
                try:
                    branch = number(value)
                except FRAME_ERRORS:
                    branch = None
                slots.append(keys.index(branch) if branch in branches else -1)
            slot = np.array(slots, dtype=np.int64)
            per_row = slot[inverse.reshape(-1)]
            rows_here = subset if subset is not None else np.arange(state.size)
            bad = per_row < 0
            if bad.any():
                state.fail(rows_here[bad])
            for position, branch in enumerate(keys):
                child = branches[branch]
                if child is None:
                    continue
                chosen = rows_here[per_row == position]
                if chosen.shape[0]:
                    self._run(child, windows, chosen, state)

    def _cantools(
        self, frames: Frames, rows: IntArray
    ) -> tuple[list[Column | None], BoolArray | None]:
        """cantools' ``Message.decode`` frame by frame (the reference, and the fallback)."""
        message = self.message
        outputs = self.output.signals
        size = int(rows.shape[0])
        lengths = frames.length[rows].tolist()
        width = int(frames.data.shape[1]) if frames.data.ndim == 2 else 0
        buffer = np.ascontiguousarray(frames.data[rows]).tobytes()
        values: list[list[object]] = [[0] * size for _ in outputs]
        present = [np.zeros(size, dtype=np.bool_) for _ in outputs]
        labels: list[list[int] | None] = [
            [-1] * size if s.labels is not None else None for s in outputs
        ]
        label_index = [
            {text: i for i, text in enumerate(s.labels)} if s.labels is not None else {}
            for s in outputs
        ]
        ok = np.ones(size, dtype=np.bool_)
        names = [s.name for s in outputs]
        for row, frame_length in enumerate(lengths):
            payload = buffer[row * width : row * width + frame_length]
            decoded = _cantools_decode(message, payload, self.choices, self.scaling)
            if decoded is None:
                ok[row] = False
                continue
            numbers, texts = decoded
            for i, name in enumerate(names):
                if name not in numbers:
                    continue
                values[i][row] = numbers[name]
                present[i][row] = True
                text = texts.get(name)
                found = labels[i]
                if found is not None and text is not None:
                    found[row] = label_index[i][text]
        columns: list[Column | None] = []
        for i, signal in enumerate(outputs):
            found = labels[i]
            columns.append(
                Column(
                    signal,
                    np.array(values[i], dtype=signal.dtype),
                    None if present[i].all() else present[i],
                    None if found is None else np.array(found, dtype=np.int32),
                )
            )
        return columns, None if ok.all() else ok


def _cantools_decode(
    message: Message, payload: bytes, choices: bool, scaling: bool
) -> tuple[dict[str, object], dict[str, str]] | None:
    """(numeric values, labels) of one frame as cantools decodes it; None if it fails.

    With choices the frame decodes as ``decode_choices=True`` does (which picks
    multiplexer branches through labels); the numeric value of a signal is the one
    ``decode_choices=False`` gives, or, where that decode differs, its conversion
    of the choice's raw value.
    """
    try:
        plain = message.decode(payload, decode_choices=False, scaling=scaling)
    except FRAME_ERRORS:
        plain = None
    if not choices:
        return None if plain is None else (dict(plain), {})  # type: ignore[arg-type]
    try:
        named = message.decode(payload, decode_choices=True, scaling=scaling)
    except FRAME_ERRORS:
        return None
    numbers: dict[str, object] = {}
    texts: dict[str, str] = {}
    for name, value in named.items():  # type: ignore[union-attr]
        if isinstance(value, NamedSignalValue | str):
            texts[name] = str(value)
            if plain is not None and name in plain:
                numbers[name] = plain[name]  # type: ignore[index]
            else:
                raw = value.value if isinstance(value, NamedSignalValue) else value
                conversion = _conversion_of(message.get_signal_by_name(name))
                numbers[name] = conversion.raw_to_scaled(raw, False) if scaling else raw
        else:
            numbers[name] = value
    return numbers, texts


def _labels(signal: Signal) -> tuple[str, ...]:
    choices: Mapping[int, object] = signal.conversion.choices or {}
    texts: list[str] = []
    for value in choices.values():
        text = str(value)
        if text not in texts:
            texts.append(text)
    return tuple(texts)


def _label_lookup(
    signal: Signal, labels: tuple[str, ...], unsigned64: bool
) -> tuple[AnyArray, npt.NDArray[np.int32]]:
    """Sorted raw keys and their label codes; keys a raw value can never equal are dropped."""
    choices: Mapping[int, object] = signal.conversion.choices or {}
    low, high = (0, _UINT64_MAX) if unsigned64 else (_INT64_MIN, _INT64_MAX)
    index = {text: i for i, text in enumerate(labels)}
    pairs = sorted(
        (int(key), index[str(value)]) for key, value in choices.items() if low <= int(key) <= high
    )
    keys = np.array([k for k, _ in pairs], dtype=np.uint64 if unsigned64 else np.int64)
    codes = np.array([c for _, c in pairs], dtype=np.int32)
    return keys, codes


class _State:
    """The columns of one message's frames while its codec tree is walked."""

    __slots__ = ("_columns", "_signals", "ok", "size")

    def __init__(self, size: int, signals: tuple[OutputSignal, ...]) -> None:
        self.size = size
        self._signals = signals
        self._columns: list[list[Any] | None] = [None] * len(signals)
        self.ok: BoolArray | None = None

    def put(
        self,
        index: int,
        subset: IntArray | None,
        values: AnyArray,
        codes: npt.NDArray[np.int32] | None,
    ) -> None:
        if subset is None:
            self._columns[index] = [values, None, codes]
            return
        current = self._columns[index]
        signal = self._signals[index]
        if current is None:
            current = [
                np.zeros(self.size, dtype=signal.dtype),
                np.zeros(self.size, dtype=np.bool_),
                None if codes is None else np.full(self.size, -1, dtype=np.int32),
            ]
            self._columns[index] = current
        current[0][subset] = values
        current[1][subset] = True
        if codes is not None:
            current[2][subset] = codes

    def fail(self, rows: IntArray) -> None:
        if self.ok is None:
            self.ok = np.ones(self.size, dtype=np.bool_)
        self.ok[rows] = False

    def columns(self) -> list[Column | None]:
        out: list[Column | None] = []
        for signal, current in zip(self._signals, self._columns, strict=True):
            if current is None:
                out.append(None)
                continue
            values, valid, codes = current
            if valid is not None and valid.all():
                valid = None
            out.append(Column(signal, values, valid, codes))
        return out
