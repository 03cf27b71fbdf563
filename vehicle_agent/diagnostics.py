"""The diagnostics tap: the per-frame hook that puts transport reassembly and fault
tracking on the agent's reader loop.

The reader calls :meth:`DiagnosticsTap.feed` for every frame and decodes what it
returns::

    for frame in source:
        message = tap.feed(frame)
        if message is not None:
            samples = decoder.decode(message)
    ...
    changes = tap.drain_changes()  # FaultChange list for the uplink

``feed`` returns the frame itself for ordinary frames, ``None`` for a transport
piece that completes nothing (TP.CM, TP.DT, ISO-TP frames: they are not given to
the decoder, see :mod:`vehicle_agent.transport`) and the reassembled message when
a piece completes one. Along the way it recognises J1939 DM1 (PGN 0xFECA, single
frame or reassembled) and positive UDS ReadDTCInformation responses (0x59) on
the ISO-TP ids, and feeds them to a :class:`~vehicle_agent.faults.FaultTracker`.

Cost: an ordinary frame costs one set lookup (its id is remembered as "plain"
after the first time) and one float comparison for the DM1 expiry clock.

Pure module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from vehicle_agent.faults import (
    FaultChange,
    FaultTracker,
    parse_dm1,
    parse_uds_dtc_response,
)
from vehicle_agent.frames import Frame
from vehicle_agent.transport import IsoTpReassembler, J1939Reassembler

__all__ = ["DM1_PGN", "DiagnosticsStats", "DiagnosticsTap"]

#: J1939 DM1, active diagnostic trouble codes.
DM1_PGN = 0xFECA

_EXTENDED = 1 << 31  # marks extended ids in the lookup key, as the decoder does
_J1939_TP = 1
_ISOTP = 2
_DM1 = 3
_UDS_DTC_PREFIX = b"\x59"  # positive ReadDTCInformation response
# Ids remembered; past this, new ids are classified on every frame (still correct,
# slower) so a bus full of random ids cannot grow memory without bound.
_MAX_REMEMBERED_IDS = 8192
_NEVER = float("inf")


@dataclass(slots=True)
class DiagnosticsStats:
    """What the tap saw: DM1 and UDS DTC reports, changes produced and lost."""

    dm1_messages: int = 0
    uds_dtc_responses: int = 0
    unparsed: int = 0
    changes: int = 0
    dropped_changes: int = 0


class DiagnosticsTap:
    """Reassemble transport messages and track fault codes, one frame at a time.

    *isotp_ids* selects the ISO-TP ids (see :class:`IsoTpReassembler`); none by
    default. *j1939_channels* limits J1939 handling (TP and DM1) to frames of
    those channels (``None``: every channel), so a proprietary 29-bit bus whose
    ids happen to look like TP.CM is left alone. *bus_names* maps a frame's
    channel to the bus name faults are reported under (``default_bus`` when
    absent). Changes wait for :meth:`drain_changes` in a queue of *max_changes*;
    when it is full the oldest change is dropped and counted.
    """

    __slots__ = (
        "_bus_names",
        "_changes",
        "_default_bus",
        "_j1939_channels",
        "_kinds",
        "_next_expiry",
        "_plain",
        "isotp",
        "j1939",
        "stats",
        "tracker",
    )

    def __init__(
        self,
        *,
        isotp_ids: Iterable[int] | Callable[[int, bool], bool] = (),
        j1939_channels: Iterable[str | None] | None = None,
        bus_names: Mapping[str | None, str] | None = None,
        default_bus: str = "can",
        tracker: FaultTracker | None = None,
        max_changes: int = 10_000,
    ) -> None:
        self.j1939 = J1939Reassembler()
        self.isotp = IsoTpReassembler(isotp_ids)
        self.tracker = tracker if tracker is not None else FaultTracker()
        self.stats = DiagnosticsStats()
        self._j1939_channels = None if j1939_channels is None else frozenset(j1939_channels)
        self._bus_names = dict(bus_names or {})
        self._default_bus = default_bus
        self._changes: deque[FaultChange] = deque(maxlen=max_changes)
        self._plain: set[int] = set()
        self._kinds: dict[int, int] = {}
        self._next_expiry = _NEVER

    def feed(self, frame: Frame) -> Frame | None:
        """Take one frame; return what the decoder should decode, if anything."""
        if frame.timestamp >= self._next_expiry:
            self.expire(frame.timestamp)
        arbitration_id = frame.arbitration_id
        key = arbitration_id | _EXTENDED if frame.is_extended else arbitration_id
        if key in self._plain:
            return frame
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._classify(key, arbitration_id, frame.is_extended)
            if not kind:
                return frame
        if kind == _ISOTP:
            message = self.isotp.feed(frame)
            # Byte 0 is the ISO-TP length byte; the service id follows.
            if message is not None and message.data[1:2] == _UDS_DTC_PREFIX:
                self._uds(message)
            return message
        channels = self._j1939_channels
        if channels is not None and frame.channel not in channels:
            return frame
        if kind == _DM1:
            self._dm1(frame)
            return frame
        message = self.j1939.feed(frame)
        if message is not None and (message.arbitration_id >> 8) & 0x3FFFF == DM1_PGN:
            self._dm1(message)
        return message

    def intercepts(self, channel: str | None, arbitration_id: int, is_extended: bool) -> bool:
        """Whether :meth:`feed` does more with such a frame than hand it back.

        False for plain frames: those may be decoded without passing through the
        tap, as long as :meth:`expire` runs at :attr:`next_expiry` (see
        :mod:`vehicle_agent.chunks`).
        """
        key = arbitration_id | _EXTENDED if is_extended else arbitration_id
        if key in self._plain:
            return False
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._classify(key, arbitration_id, is_extended)
        if kind == _ISOTP:
            return True
        channels = self._j1939_channels
        return bool(kind) and (channels is None or channel in channels)

    @property
    def next_expiry(self) -> float:
        """The CAN time (seconds) at which :meth:`expire` has something to do."""
        return self._next_expiry

    def drain_changes(self) -> list[FaultChange]:
        """Return and forget the fault changes collected so far, oldest first."""
        changes = list(self._changes)
        self._changes.clear()
        return changes

    def expire(self, now: float) -> None:
        """Apply CAN-time timeouts at *now* (seconds): DM1 expiry and open sessions."""
        self.j1939.expire(now)
        self.isotp.expire(now)
        self._collect(self.tracker.expire(round(now * 1_000_000)))
        self._schedule()

    def _classify(self, key: int, arbitration_id: int, is_extended: bool) -> int:
        # ISO-TP first: a configured 29-bit ISO-TP id (normal fixed addressing,
        # 0x18DAxxxx) is ISO-TP even though it is also a J1939 id.
        kind = 0
        if self.isotp.handles_id(arbitration_id, is_extended):
            kind = _ISOTP
        elif J1939Reassembler.handles_id(arbitration_id, is_extended):
            kind = _J1939_TP
        elif is_extended and (arbitration_id >> 8) & 0x3FFFF == DM1_PGN:
            kind = _DM1
        if len(self._plain) + len(self._kinds) < _MAX_REMEMBERED_IDS:
            if kind:
                self._kinds[key] = kind
            else:
                self._plain.add(key)
        return kind

    def _bus(self, channel: str | None) -> str:
        return self._bus_names.get(channel, self._default_bus)

    def _dm1(self, frame: Frame) -> None:
        try:
            dm1 = parse_dm1(frame.data)
        except ValueError:
            self.stats.unparsed += 1
            return
        self.stats.dm1_messages += 1
        changes = self.tracker.update_j1939(
            self._bus(frame.channel),
            frame.arbitration_id & 0xFF,
            round(frame.timestamp * 1_000_000),
            dm1.dtcs,
        )
        self._collect(changes)
        self._schedule()

    def _uds(self, message: Frame) -> None:
        try:
            # Byte 0 is the ISO-TP length byte of the reassembled layout.
            dtcs = parse_uds_dtc_response(message.data[1:])
        except ValueError:
            self.stats.unparsed += 1
            return
        self.stats.uds_dtc_responses += 1
        self._collect(
            self.tracker.update_uds(
                self._bus(message.channel),
                message.arbitration_id,
                round(message.timestamp * 1_000_000),
                dtcs,
            )
        )

    def _collect(self, changes: list[FaultChange]) -> None:
        queue = self._changes
        # The deque drops its oldest entries itself; count them first.
        overflow = len(queue) + len(changes) - (queue.maxlen or 0)
        if overflow > 0:
            self.stats.dropped_changes += overflow
        queue.extend(changes)
        self.stats.changes += len(changes)

    def _schedule(self) -> None:
        due = self.tracker.next_expiry_us()
        self._next_expiry = _NEVER if due is None else due / 1_000_000
