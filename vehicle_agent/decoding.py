"""Turn CAN frames into (catalog index, value) samples with the configured DBC files.

The :class:`Decoder` sits on the agent's hot path: every frame from every bus goes
through :meth:`Decoder.decode`. It never raises for a bad frame; it counts why a
frame gave no samples in :class:`DecodeStats` so losses are reported, not hidden.

Frames are matched to DBC messages with lookups built once:

* by identifier and extended flag: cantools decides a message is extended when its
  id exceeds 0x7FF, so a 29-bit frame with a small id must carry its real flag;
* for J1939 DBC files, extended frames by parameter group number, ignoring
  priority, source address and (PDU1) destination address: one DBC entry then
  matches the same parameter group from every sender.

Pure module: cantools only, no python-can.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cantools.database.can import Message
from cantools.database.errors import DecodeError

from vehicle_agent.catalog import (
    BoundDbc,
    Catalog,
    DbcSpec,
    LoadedDbc,
    bind_dbc,
    j1939_pgn,
    read_dbc,
)
from vehicle_agent.fastdecode import compile_message
from vehicle_agent.frames import Frame

__all__ = ["DecodeStats", "Decoder", "Sample"]

#: One decoded value: (catalog index, physical value).
Sample = tuple[int, int | float]

# Marks extended ids in the integer lookup key (ids are at most 29 bits), which
# spares a tuple allocation per frame.
_EXTENDED = 1 << 31

# What cantools raises for a payload that does not fit the message: wrong length
# or an unknown multiplexer value (DecodeError), and the ValueError/KeyError the
# bit unpacker or a codec can raise. Anything else is a bug and must surface.
_DECODE_ERRORS = (DecodeError, KeyError, ValueError, OverflowError, struct.error)


@dataclass(slots=True)
class DecodeStats:
    """What happened to the frames given to a :class:`Decoder`.

    ``frames`` counts every frame; ``decoded`` those that matched a message and
    decoded (a message without signals decodes to no samples but still counts);
    ``samples`` the values produced. The other counters say why a frame was
    skipped; each skipped frame is counted exactly once.
    """

    frames: int = 0
    decoded: int = 0
    samples: int = 0
    unknown_id: int = 0
    decode_errors: int = 0
    error_frames: int = 0
    remote_frames: int = 0
    not_selected: int = 0
    unchanged: int = 0

    def by_reason(self) -> dict[str, int]:
        """Skipped frames by reason."""
        return {
            "unknown_id": self.unknown_id,
            "decode_error": self.decode_errors,
            "error_frame": self.error_frames,
            "remote_frame": self.remote_frames,
            "not_selected": self.not_selected,
            "unchanged": self.unchanged,
        }

    @property
    def skipped(self) -> int:
        """Frames that gave no decode (the sum of :meth:`by_reason`)."""
        return (
            self.unknown_id
            + self.decode_errors
            + self.error_frames
            + self.remote_frames
            + self.not_selected
            + self.unchanged
        )


# Decodes one payload of a matched message: a precompiled exact decoder (see
# vehicle_agent.fastdecode) or cantools' Message.decode with the Decoder's arguments.
_DecodeFn = Callable[[bytes], object]

# How a matched message decodes, whether that is a compiled decoder (which
# gives a number for every signal, in the message's order) and whether a shorter
# payload decodes (multi-frame messages); by signal name, the catalog index of
# each of its signals; whether a frame repeating the previous payload may be
# skipped; and whether its frames must be decoded one at a time (truncation or
# repeats), never in a vectorised chunk.
_Decoding = tuple[_DecodeFn, bool, bool]
_Target = tuple[_DecodeFn, bool, dict[str, int], bool, bool]

# Stands for a message the active selection does not need (known, not decoded).
_NOT_SELECTED: _Target = (
    Message(frame_id=0, name="", length=0, signals=[]).decode,
    False,
    {},
    False,
    False,
)


@dataclass(frozen=True, slots=True)
class _Route:
    """The lookups of one DBC spec."""

    channel: str | None
    by_id: dict[int, _Target]
    by_pgn: dict[int, _Target] | None  # None unless the spec is J1939


class Decoder:
    """Decode frames with a list of DBC specs, tried in order.

    Each DBC file is loaded once even when several specs use it. A spec with a
    ``channel`` only sees frames of that channel; the first spec that knows a
    frame's identifier decodes it.

    Raises :class:`vehicle_agent.errors.DbcError` if a DBC file cannot be loaded.
    """

    __slots__ = (
        "_decoders",
        "_last_payload",
        "_routes",
        "bound",
        "catalog",
        "fast",
        "selected",
        "skip_unchanged",
        "stats",
    )

    def __init__(
        self, specs: Sequence[DbcSpec], *, strict: bool = False, fast: bool = True
    ) -> None:
        loaded: dict[Path, LoadedDbc] = {}
        bound: list[BoundDbc] = []
        for spec in specs:
            key = spec.path.resolve()
            if key not in loaded:
                loaded[key] = read_dbc(spec.path, strict=strict)
            bound.append(bind_dbc(spec, loaded[key]))
        self.bound: tuple[BoundDbc, ...] = tuple(bound)
        #: Whether messages decode with precompiled exact decoders where possible
        #: (see :mod:`vehicle_agent.fastdecode`); False: always with cantools.
        self.fast = fast
        self._decoders = _decoders(self.bound, fast)
        self.catalog = Catalog.build(self.bound)
        self.stats = DecodeStats()
        #: Catalog indices decoded (None: every signal).
        self.selected: frozenset[int] | None = None
        #: Catalog indices whose repeated payloads are not decoded again.
        self.skip_unchanged: frozenset[int] = frozenset()
        self._last_payload: dict[tuple[str | None, int, bool], bytes] = {}
        self._routes: tuple[_Route, ...] = tuple(
            _route(entry, self.catalog, self._decoders, None, frozenset()) for entry in bound
        )

    def select(
        self, indices: frozenset[int] | None, *, skip_unchanged: frozenset[int] = frozenset()
    ) -> None:
        """Decode only the messages carrying at least one of *indices* (None: all).

        A message whose selected signals are all in *skip_unchanged* (their
        consumer only wants changes) is not decoded again while its payload
        repeats the previous frame's on the same bus. Frames of known messages
        that are not selected count as ``not_selected``, repeats as ``unchanged``.
        """
        self.selected = indices
        self.skip_unchanged = skip_unchanged
        self._last_payload.clear()
        self._routes = tuple(
            _route(entry, self.catalog, self._decoders, indices, skip_unchanged)
            for entry in self.bound
        )

    def decode(self, frame: Frame) -> list[Sample]:
        """Return the samples of one frame; an empty list when it gives none."""
        stats = self.stats
        stats.frames += 1
        if frame.is_error:
            stats.error_frames += 1
            return []
        if frame.is_remote:
            stats.remote_frames += 1
            return []
        target = self._find(frame.channel, frame.arbitration_id, frame.is_extended)
        if target is None:
            stats.unknown_id += 1
            return []
        if target is _NOT_SELECTED:
            stats.not_selected += 1
            return []
        decode, compiled, indices, skip_repeats, _ = target
        if skip_repeats:
            # Per sender: one J1939 entry matches the same PGN from every source.
            key = (frame.channel, frame.arbitration_id, frame.is_extended)
            if self._last_payload.get(key) == frame.data:
                stats.unchanged += 1
                return []
            self._last_payload[key] = frame.data
        try:
            # Message.decode (or its exact compiled equivalent) applies the message's
            # own layout; Database.decode_message would look the id up again and
            # ignore J1939 masks. Raw choice values stay numbers: the labels travel
            # once, in the catalog. A payload shorter than the message raises
            # DecodeError either way.
            decoded = decode(frame.data)
        except _DECODE_ERRORS:
            stats.decode_errors += 1
            return []
        if not isinstance(decoded, dict):  # a container's list: DBC files have none
            stats.decode_errors += 1
            return []
        if compiled:
            # Only numbers, one per signal: pair them up without a Python loop.
            samples = list(zip(map(indices.__getitem__, decoded), decoded.values(), strict=True))
        else:
            samples = [
                (indices[name], value)
                for name, value in decoded.items()
                if isinstance(value, int | float)
            ]
        stats.decoded += 1
        stats.samples += len(samples)
        return samples

    def frame_by_frame(self, channel: str | None, arbitration_id: int, is_extended: bool) -> bool:
        """Whether frames with this id on *channel* must be decoded one at a time.

        True for messages that decode shorter payloads (multi-frame messages) and
        for those whose repeated payloads are skipped: both depend on more than
        the frame itself, so :mod:`vehicle_agent.chunks` leaves them to
        :meth:`decode`.
        """
        target = self._find(channel, arbitration_id, is_extended)
        return target is not None and target[4]

    def _find(self, channel: str | None, arbitration_id: int, is_extended: bool) -> _Target | None:
        for route in self._routes:
            if route.channel is not None and route.channel != channel:
                continue
            if is_extended:
                if route.by_pgn is not None:
                    target = route.by_pgn.get(j1939_pgn(arbitration_id))
                else:
                    target = route.by_id.get(arbitration_id | _EXTENDED)
            else:
                target = route.by_id.get(arbitration_id)
            if target is not None:
                return target
        return None


def _decoders(bound: Sequence[BoundDbc], fast: bool) -> dict[int, _Decoding]:
    """How each message of the loaded files decodes, by ``id()`` of the message.

    Compiled once per message (select() rebuilds the routes, not the decoders);
    the messages stay alive in ``bound``.
    """
    decoders: dict[int, _Decoding] = {}
    for entry in bound:
        for message in entry.dbc.database.messages:
            if id(message) in decoders:
                continue
            # A shorter payload decodes the signals it holds for multi-frame
            # messages, whose DBC length is often the longest the ECU may send.
            truncated_ok = message.length > 8
            compiled = compile_message(message) if fast and not truncated_ok else None
            decoders[id(message)] = (
                (compiled, True, truncated_ok)
                if compiled is not None
                else (
                    partial(
                        message.decode,
                        decode_choices=False,
                        scaling=True,
                        allow_truncated=truncated_ok,
                    ),
                    False,
                    truncated_ok,
                )
            )
    return decoders


def _route(
    entry: BoundDbc,
    catalog: Catalog,
    decoders: dict[int, _Decoding],
    selected: frozenset[int] | None,
    skip_unchanged: frozenset[int],
) -> _Route:
    by_id: dict[int, _Target] = {}
    by_pgn: dict[int, _Target] | None = {} if entry.j1939 else None
    bus = entry.spec.bus
    for message in entry.dbc.database.messages:
        indices = {
            signal.name: catalog.index_of(bus, message.name, signal.name)
            for signal in message.signals
        }
        target: _Target
        decode, compiled, truncated_ok = decoders[id(message)]
        if selected is None:
            target = (decode, compiled, indices, False, truncated_ok)
        elif selected.isdisjoint(indices.values()):
            # Still matched, so the frame counts as known but not needed. An empty
            # message (no signals) stays decodable: it says the id is alive.
            target = (
                (decode, compiled, indices, False, truncated_ok) if not indices else _NOT_SELECTED
            )
        else:
            skip = selected.intersection(indices.values()) <= skip_unchanged
            target = (decode, compiled, indices, skip, truncated_ok or skip)
        # The first message wins when two share an id (or a PGN), matching the
        # catalog's keep-the-first rule.
        if message.is_extended_frame and by_pgn is not None:
            by_pgn.setdefault(j1939_pgn(message.frame_id), target)
        elif message.is_extended_frame:
            by_id.setdefault(message.frame_id | _EXTENDED, target)
        else:
            by_id.setdefault(message.frame_id, target)
    return _Route(channel=entry.spec.channel, by_id=by_id, by_pgn=by_pgn)
