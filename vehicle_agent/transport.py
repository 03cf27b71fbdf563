"""Reassembly of multi-frame CAN messages: J1939 transport protocol and ISO-TP.

A CAN frame carries at most 8 bytes (64 on CAN FD); longer messages such as J1939
DM1 with several fault codes, engine configuration (EC1) or UDS diagnostic
responses travel in pieces. Both reassemblers here only *listen*: they never
send a CTS or a flow-control frame, they rebuild what two other nodes exchange.

Each reassembler has one method for the hot path, ``feed(frame) -> Frame | None``:
it returns a synthetic :class:`~vehicle_agent.frames.Frame` when a message
completes and ``None`` otherwise, including for every frame that is not a
transport frame (``handles(frame)`` tells them apart without side effects).

Decision: transport frames themselves (J1939 TP.CM/TP.DT, ISO-TP single, first,
consecutive and flow-control frames) are *not* meant for the signal decoder. A
DBC describes the reassembled message; handing it the pieces too would count
every piece as an unknown id or a decode error and, for ISO-TP single frames,
decode the same message twice. :class:`vehicle_agent.diagnostics.DiagnosticsTap`
applies that rule; the pieces are accounted for in :class:`TransportStats`.

Payload layouts of the synthetic frames (established on the CSS Electronics
recordings and their DBC files, see the tests):

* J1939: exactly the announced number of bytes, as the parameter group defines
  them (``tp_j1939.dbc`` EC1, PGN 0xFEE3: engine speed at point 5 in bytes 12-13).
  The arbitration id is rebuilt from the TP.CM frame: its priority, the announced
  PGN, for PDU1 PGNs the destination address, and the sender's source address.
* ISO-TP: one leading byte holding the low 8 bits of the ISO-TP message length,
  then the message (``tp_uds.dbc`` puts the UDS service id in byte 1). For a
  classic single frame that is the frame's own PCI byte; for a first frame it is
  the byte after the PCI nibble. Padding after the message is dropped.

Pure module: no python-can, no cantools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from vehicle_agent.frames import Frame

__all__ = [
    "BAM_TIMEOUT_S",
    "CMDT_TIMEOUT_S",
    "ISOTP_TIMEOUT_S",
    "IsoTpReassembler",
    "J1939Reassembler",
    "TransportStats",
]

#: J1939-21 T1: a BAM receiver gives up 750 ms after the last packet.
BAM_TIMEOUT_S = 0.75
#: J1939-21 T2/T3 (1250 ms) for connection mode; it also covers T1 (750 ms) between
#: packets and T4 (1050 ms) after a "hold" CTS, which a listener cannot tell apart
#: cheaply from a CTS window that has ended.
CMDT_TIMEOUT_S = 1.25
#: ISO 15765-2 N_Cr: at most 1000 ms between consecutive frames.
ISOTP_TIMEOUT_S = 1.0

_TP_CM = 0xEC  # PDU format of TP.CM (PGN 0xEC00)
_TP_DT = 0xEB  # PDU format of TP.DT (PGN 0xEB00)
_BAM = 0x20
_RTS = 0x10
_CTS = 0x11
_EOMA = 0x13
_ABORT = 0xFF
_J1939_MAX_BYTES = 255 * 7
_GLOBAL = 0xFF
_PDU2_MIN_PF = 240
# Expired sessions are swept at most this often (CAN time); a session whose
# deadline passed is also caught when its next frame arrives.
_SWEEP_EVERY_S = 0.5


@dataclass(slots=True)
class TransportStats:
    """What one reassembler did; every counter only grows.

    ``completed`` messages and their payload ``bytes``; sessions ``aborted`` (a
    TP.CM Abort, an end-of-message acknowledgement before we had every packet,
    an ISO-TP single frame or sequence error interrupting a message),
    ``replaced`` by a new announcement from the same sender, ``timed_out`` by CAN
    time and ``dropped_sessions`` to keep within the session bound. Packet level:
    ``out_of_sequence`` (J1939: a packet not the next expected, still used;
    ISO-TP: a sequence-number mismatch, which aborts), ``duplicates`` (J1939 packet
    received twice; the later copy wins, as a retransmission would),
    ``unexpected`` (data for no open session), ``malformed`` (inconsistent
    announcements or lengths).
    """

    completed: int = 0
    bytes: int = 0
    aborted: int = 0
    replaced: int = 0
    timed_out: int = 0
    dropped_sessions: int = 0
    out_of_sequence: int = 0
    duplicates: int = 0
    unexpected: int = 0
    malformed: int = 0


class _Expiring(Protocol):
    deadline: float


_K = TypeVar("_K")
_S = TypeVar("_S", bound=_Expiring)


class _Sessions(Generic[_K, _S]):
    """The open reassemblies of one reassembler: bounded, expired by CAN time, counted."""

    __slots__ = ("_max", "_open", "next_sweep", "stats")

    def __init__(self, max_sessions: int, stats: TransportStats) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._max = max_sessions
        self._open: dict[_K, _S] = {}
        self.stats = stats
        self.next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._open)

    def get(self, key: _K) -> _S | None:
        return self._open.get(key)

    def pop(self, key: _K) -> _S | None:
        return self._open.pop(key, None)

    def start(self, key: _K, session: _S) -> None:
        """Open *session*, replacing one under the same key or, when full, the oldest."""
        sessions = self._open
        if sessions.pop(key, None) is not None:
            self.stats.replaced += 1
        elif len(sessions) >= self._max:
            # Insertion order: the oldest announcement goes first.
            del sessions[next(iter(sessions))]
            self.stats.dropped_sessions += 1
        sessions[key] = session

    def live(self, key: _K, now: float) -> _S | None:
        """The session a continuation frame at CAN time *now* belongs to, if still open."""
        session = self._open.get(key)
        if session is None:
            self.stats.unexpected += 1
            return None
        if now > session.deadline:
            del self._open[key]
            self.stats.timed_out += 1
            self.stats.unexpected += 1
            return None
        return session

    def expire(self, now: float) -> int:
        """Drop the sessions whose deadline is before CAN time *now*; return how many."""
        self.next_sweep = now + _SWEEP_EVERY_S
        stale = [key for key, session in self._open.items() if session.deadline < now]
        for key in stale:
            del self._open[key]
        self.stats.timed_out += len(stale)
        return len(stale)


@dataclass(slots=True)
class _J1939Session:
    priority: int
    pgn: int
    size: int
    packets: int
    bam: bool
    deadline: float
    chunks: list[bytes | None]
    received: int = 0
    next_seq: int = 1


class J1939Reassembler:
    """Rebuild J1939-21 multi-packet messages (BAM and RTS/CTS) from TP.CM and TP.DT.

    Sessions are keyed by (channel, source address, destination address), as the
    standard allows one session per sender and receiver pair (one BAM per sender).
    A message completes as soon as every announced packet is in, without waiting
    for the receiver's end-of-message acknowledgement; a CTS that re-requests
    packets after that finds no session and its packets count as ``unexpected``.
    """

    __slots__ = ("_sessions", "bam_timeout", "cmdt_timeout", "stats")

    def __init__(
        self,
        *,
        max_sessions: int = 64,
        bam_timeout: float = BAM_TIMEOUT_S,
        cmdt_timeout: float = CMDT_TIMEOUT_S,
    ) -> None:
        self.bam_timeout = bam_timeout
        self.cmdt_timeout = cmdt_timeout
        self.stats = TransportStats()
        self._sessions: _Sessions[tuple[str | None, int, int], _J1939Session] = _Sessions(
            max_sessions, self.stats
        )

    @staticmethod
    def handles_id(arbitration_id: int, is_extended: bool) -> bool:
        """Tell whether frames with this id are TP.CM or TP.DT (data page 0)."""
        return is_extended and (arbitration_id >> 16) & 0x3FF in (_TP_CM, _TP_DT)

    def handles(self, frame: Frame) -> bool:
        """Tell whether *frame* is a J1939 transport-protocol frame."""
        return self.handles_id(frame.arbitration_id, frame.is_extended)

    @property
    def open_sessions(self) -> int:
        """Sessions waiting for more packets."""
        return len(self._sessions)

    def feed(self, frame: Frame) -> Frame | None:
        """Take one frame; return the reassembled message when this frame completes one."""
        if not frame.is_extended or frame.is_error or frame.is_remote:
            return None
        arbitration_id = frame.arbitration_id
        pdu_format = (arbitration_id >> 16) & 0x3FF
        if pdu_format != _TP_CM and pdu_format != _TP_DT:
            return None
        now = frame.timestamp
        if now >= self._sessions.next_sweep:
            self.expire(now)
        source = arbitration_id & 0xFF
        destination = (arbitration_id >> 8) & 0xFF
        data = frame.data
        if len(data) < 8:
            self.stats.malformed += 1
            return None
        if pdu_format == _TP_DT:
            return self._data(frame, (frame.channel, source, destination))
        self._control(frame, source, destination)
        return None

    def expire(self, now: float) -> int:
        """Drop the sessions whose deadline is before CAN time *now*; return how many."""
        return self._sessions.expire(now)

    def _control(self, frame: Frame, source: int, destination: int) -> None:
        data = frame.data
        control = data[0]
        pgn = data[5] | data[6] << 8 | (data[7] & 0x03) << 16
        key = (frame.channel, source, destination)
        if control in (_BAM, _RTS):
            size = data[1] | data[2] << 8
            packets = data[3]
            if packets == 0 or size == 0 or size > _J1939_MAX_BYTES or size > packets * 7:
                self.stats.malformed += 1
                return
            bam = control == _BAM
            if bam and destination != _GLOBAL:
                self.stats.malformed += 1
                return
            self._sessions.start(
                key,
                _J1939Session(
                    priority=(frame.arbitration_id >> 26) & 0x7,
                    pgn=pgn,
                    size=size,
                    packets=packets,
                    bam=bam,
                    deadline=frame.timestamp + (self.bam_timeout if bam else self.cmdt_timeout),
                    chunks=[None] * packets,
                ),
            )
        elif control == _CTS:
            # Sent by the receiver: the session is keyed from the sender's side.
            session = self._sessions.get((frame.channel, destination, source))
            if session is not None and not session.bam and session.pgn == pgn:
                session.deadline = frame.timestamp + self.cmdt_timeout
                if data[1]:
                    session.next_seq = data[2]
        elif control == _EOMA:
            # The receiver says it has everything; if we do not, we missed packets.
            if self._sessions.pop((frame.channel, destination, source)) is not None:
                self.stats.aborted += 1
        elif control == _ABORT:
            # Either side may abort; try both directions.
            for abort_key in (
                (frame.channel, source, destination),
                (frame.channel, destination, source),
            ):
                session = self._sessions.get(abort_key)
                if session is not None and session.pgn == pgn and not session.bam:
                    self._sessions.pop(abort_key)
                    self.stats.aborted += 1
                    break
        else:
            self.stats.malformed += 1

    def _data(self, frame: Frame, key: tuple[str | None, int, int]) -> Frame | None:
        now = frame.timestamp
        session = self._sessions.live(key, now)
        if session is None:
            return None
        stats = self.stats
        data = frame.data
        seq = data[0]
        if seq == 0 or seq > session.packets:
            stats.out_of_sequence += 1
            return None
        if seq != session.next_seq:
            stats.out_of_sequence += 1
        session.next_seq = seq + 1
        chunk = bytes(data[1:8])
        if session.chunks[seq - 1] is None:
            session.received += 1
        else:
            stats.duplicates += 1
        session.chunks[seq - 1] = chunk
        session.deadline = now + (self.bam_timeout if session.bam else self.cmdt_timeout)
        if session.received < session.packets:
            return None
        self._sessions.pop(key)
        payload = b"".join(c for c in session.chunks if c is not None)[: session.size]
        stats.completed += 1
        stats.bytes += len(payload)
        return Frame(
            timestamp=now,
            arbitration_id=_j1939_id(session.priority, session.pgn, key[2], key[1]),
            data=payload,
            is_extended=True,
            channel=frame.channel,
        )


def _j1939_id(priority: int, pgn: int, destination: int, source: int) -> int:
    if (pgn >> 8) & 0xFF < _PDU2_MIN_PF:
        return priority << 26 | (pgn & 0x3FF00) << 8 | destination << 8 | source
    return priority << 26 | pgn << 8 | source


@dataclass(slots=True)
class _IsoTpSession:
    length: int
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    next_sn: int = 1


_IdPredicate = Callable[[int, bool], bool]


class IsoTpReassembler:
    """Rebuild ISO 15765-2 messages (normal addressing) on the configured ids.

    *ids* are the arbitration ids that carry ISO-TP (typically the UDS response
    ids, e.g. 0x7E8-0x7EF), or a predicate ``(arbitration_id, is_extended)``.
    A set of plain ints means 11-bit ids. Extended and mixed addressing (an
    address byte before the PCI) are not supported. Flow-control frames are
    ignored: we only listen. CAN FD escapes are understood: a single frame whose
    length nibble is 0 carries its length in byte 1, a first frame whose 12-bit
    length is 0 carries a 32-bit length in bytes 2-5. Messages longer than
    *max_length* are refused (``malformed``) so a corrupt length cannot make us
    buffer megabytes.
    """

    __slots__ = ("_accepts", "_max_length", "_sessions", "stats", "timeout")

    def __init__(
        self,
        ids: Iterable[int] | _IdPredicate,
        *,
        timeout: float = ISOTP_TIMEOUT_S,
        max_sessions: int = 64,
        max_length: int = 1 << 16,
    ) -> None:
        if callable(ids):
            self._accepts: _IdPredicate = ids
        else:
            standard = frozenset(ids)
            self._accepts = lambda arbitration_id, is_extended: (
                not is_extended and arbitration_id in standard
            )
        self.timeout = timeout
        self._max_length = max_length
        self.stats = TransportStats()
        self._sessions: _Sessions[tuple[str | None, int, bool], _IsoTpSession] = _Sessions(
            max_sessions, self.stats
        )

    def handles_id(self, arbitration_id: int, is_extended: bool) -> bool:
        """Tell whether frames with this id are configured as ISO-TP."""
        return self._accepts(arbitration_id, is_extended)

    def handles(self, frame: Frame) -> bool:
        """Tell whether *frame* is on a configured ISO-TP id."""
        return self._accepts(frame.arbitration_id, frame.is_extended)

    @property
    def open_sessions(self) -> int:
        """Messages waiting for more consecutive frames."""
        return len(self._sessions)

    def feed(self, frame: Frame) -> Frame | None:
        """Take one frame; return the message it completes (a single frame completes one)."""
        if frame.is_error or frame.is_remote or not frame.data:
            return None
        if not self._accepts(frame.arbitration_id, frame.is_extended):
            return None
        now = frame.timestamp
        if now >= self._sessions.next_sweep:
            self.expire(now)
        data = frame.data
        kind = data[0] >> 4
        key = (frame.channel, frame.arbitration_id, frame.is_extended)
        if kind == 0:
            return self._single(frame, key)
        if kind == 1:
            self._first(frame, key)
            return None
        if kind == 2:
            return self._consecutive(frame, key)
        if kind != 3:  # 3 is flow control, sent by the tester: nothing to keep
            self.stats.malformed += 1
        return None

    def expire(self, now: float) -> int:
        """Drop the messages whose next frame is overdue at CAN time *now*; return how many."""
        return self._sessions.expire(now)

    def _single(self, frame: Frame, key: tuple[str | None, int, bool]) -> Frame | None:
        data = frame.data
        length = data[0] & 0x0F
        start = 1
        if length == 0 and len(data) > 8:  # CAN FD escape
            length = data[1]
            start = 2
        if length == 0 or start + length > len(data):
            self.stats.malformed += 1
            return None
        if self._sessions.pop(key) is not None:
            # ISO 15765-2: a single frame during a reception ends that reception.
            self.stats.aborted += 1
        return self._complete(frame, length, data[start : start + length])

    def _first(self, frame: Frame, key: tuple[str | None, int, bool]) -> None:
        data = frame.data
        stats = self.stats
        if len(data) < 2:
            stats.malformed += 1
            return
        length = (data[0] & 0x0F) << 8 | data[1]
        start = 2
        if length == 0:  # escape: 32-bit length
            if len(data) < 6:
                stats.malformed += 1
                return
            length = int.from_bytes(data[2:6], "big")
            start = 6
        first = data[start:]
        if length <= len(first) or length > self._max_length:
            stats.malformed += 1
            return
        self._sessions.start(
            key,
            _IsoTpSession(
                length=length, deadline=frame.timestamp + self.timeout, buffer=bytearray(first)
            ),
        )

    def _consecutive(self, frame: Frame, key: tuple[str | None, int, bool]) -> Frame | None:
        now = frame.timestamp
        session = self._sessions.live(key, now)
        if session is None:
            return None
        stats = self.stats
        data = frame.data
        if data[0] & 0x0F != session.next_sn:
            # A lost or repeated frame: the message cannot be trusted any more.
            self._sessions.pop(key)
            stats.out_of_sequence += 1
            stats.aborted += 1
            return None
        session.next_sn = (session.next_sn + 1) & 0x0F
        session.buffer += data[1:]
        session.deadline = now + self.timeout
        if len(session.buffer) < session.length:
            return None
        self._sessions.pop(key)
        return self._complete(frame, session.length, session.buffer[: session.length])

    def _complete(self, frame: Frame, length: int, payload: bytes | bytearray) -> Frame:
        self.stats.completed += 1
        self.stats.bytes += length
        return Frame(
            timestamp=frame.timestamp,
            arbitration_id=frame.arbitration_id,
            data=bytes((length & 0xFF,)) + payload,
            is_extended=frame.is_extended,
            is_fd=frame.is_fd,
            channel=frame.channel,
        )
