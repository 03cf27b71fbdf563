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

The engine's parts, in :mod:`vehicle_agent.vector`: ``model`` (the data in and
out: frames, sources, batches, counts), ``values`` (dtypes, exact scaling, choice
labels), ``layout`` (bit positions and extraction), ``mux`` (walking the
multiplexing tree), ``plan`` (one message's compiled plan) and ``fallback``
(cantools frame by frame). This module routes frames to messages (:class:`VectorDecoder`) and
re-exports the data types.

Pure compute modules: numpy and cantools (plus the pure J1939 rule of
:mod:`vehicle_agent.catalog`); no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from cantools.database.can import Message

from vehicle_agent.catalog import j1939_pgn
from vehicle_agent.vector.model import (
    ERROR,
    EXTENDED,
    FRAME_ERRORS,
    REMOTE,
    Column,
    DbcSource,
    DecodeCounts,
    Engine,
    Frames,
    IntArray,
    MessageBatch,
    OutputMessage,
    OutputSignal,
)
from vehicle_agent.vector.plan import MessagePlan

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


# Target codes for frames that decode no message.
_UNKNOWN = -1
_NOT_SELECTED = -2


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
        plans: list[MessagePlan] = []
        self._plan_of: dict[int, int] = {}
        for name, message in names.items():
            if selection is not None and name not in selection:
                continue
            wanted = None if selection is None else selection[name]
            plan = MessagePlan(len(plans), name, message, wanted, choices, scaling, engine)
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
