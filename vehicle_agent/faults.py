"""Diagnostic trouble codes: J1939 DM1 and UDS ReadDTCInformation, and their changes.

Parsers turn payloads into DTC lists; :class:`FaultTracker` turns the snapshots an
ECU reports into changes (a code became active, or stopped being active), which
is what the cloud stores as :class:`FaultChange` (the pure mirror of the wire's
``FaultCode`` message, so the core never imports protobuf).

Choices made here, and why:

* J1939 DM1 DTCs are read in the version 4 layout (SPN 19 bits little-endian
  over bytes 1-3 of the DTC, FMI in the low 5 bits of byte 3, conversion method
  bit and 7-bit occurrence count in byte 4). CM=1 says the sender uses one of the
  three older SPN layouts (J1939-73 versions 1-3), and the message does not say
  which; guessing would invent SPNs, so the DTC is read as version 4 and its
  ``conversion_method`` is kept so a consumer can flag the number as doubtful.
* A UDS DTC is *active* when status bit 0 (testFailed) is set: the failure is
  present at the latest test, the closest match to J1939's "active" DM1. Codes
  only confirmed or pending in memory (bits 2-3) are history, not active faults.

Pure module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Dm1",
    "FaultChange",
    "FaultTracker",
    "J1939Dtc",
    "UdsDtc",
    "parse_dm1",
    "parse_uds_dtc_response",
]

Protocol = Literal["j1939_dm1", "uds"]
State = Literal["set", "cleared"]

_UDS_READ_DTC_RESPONSE = 0x59
# Sub-functions whose response is: availability mask, then (DTC, status) records.
_STATUS_RECORD_SUBFUNCTIONS = frozenset(
    {
        0x02,  # reportDTCByStatusMask
        0x0A,  # reportSupportedDTC
        0x0F,  # reportMirrorMemoryDTCByStatusMask
        0x13,  # reportEmissionsOBDDTCByStatusMask
        0x15,  # reportDTCWithPermanentStatus
    }
)
_TEST_FAILED = 0x01
_J2012_SYSTEMS = "PCBU"


@dataclass(frozen=True, slots=True)
class J1939Dtc:
    """One J1939 diagnostic trouble code as DM1 reports it."""

    spn: int
    fmi: int
    occurrences: int
    conversion_method: int = 0

    @property
    def code(self) -> str:
        """Display form, e.g. ``"SPN 520 FMI 3"``."""
        return f"SPN {self.spn} FMI {self.fmi}"


@dataclass(frozen=True, slots=True)
class Dm1:
    """A parsed DM1 (active diagnostic trouble codes) message.

    Lamp states are the 2-bit J1939 values (0 off, 1 on, 3 not available);
    flash states likewise (0 slow, 1 fast, 3 unavailable / do not flash).
    """

    malfunction_lamp: int
    red_stop_lamp: int
    amber_warning_lamp: int
    protect_lamp: int
    malfunction_flash: int
    red_stop_flash: int
    amber_warning_flash: int
    protect_flash: int
    dtcs: tuple[J1939Dtc, ...]


def parse_dm1(data: bytes) -> Dm1:
    """Parse a DM1 payload (single frame or reassembled).

    Bytes 0-1 are lamp status and flash, then 4 bytes per DTC. SPN 0 with FMI 0
    (the "no active DTC" placeholder), an all-0xFF DTC (padding) and a trailing
    partial DTC are not DTCs. Raises ``ValueError`` for fewer than 2 bytes.
    """
    if len(data) < 2:
        raise ValueError(f"DM1 needs at least 2 bytes, got {len(data)}")
    lamps, flash = data[0], data[1]
    dtcs: list[J1939Dtc] = []
    for start in range(2, len(data) - 3, 4):
        b0, b1, b2, b3 = data[start : start + 4]
        if b0 == b1 == b2 == b3 == 0xFF:
            continue
        spn = b0 | b1 << 8 | (b2 >> 5) << 16
        fmi = b2 & 0x1F
        if spn == 0 and fmi == 0:
            continue
        dtcs.append(J1939Dtc(spn=spn, fmi=fmi, occurrences=b3 & 0x7F, conversion_method=b3 >> 7))
    return Dm1(
        malfunction_lamp=lamps >> 6 & 3,
        red_stop_lamp=lamps >> 4 & 3,
        amber_warning_lamp=lamps >> 2 & 3,
        protect_lamp=lamps & 3,
        malfunction_flash=flash >> 6 & 3,
        red_stop_flash=flash >> 4 & 3,
        amber_warning_flash=flash >> 2 & 3,
        protect_flash=flash & 3,
        dtcs=tuple(dtcs),
    )


@dataclass(frozen=True, slots=True)
class UdsDtc:
    """One UDS DTC: the 3-byte code and its status byte."""

    dtc: int
    status: int

    @property
    def active(self) -> bool:
        """Status bit 0, testFailed (see the module docstring)."""
        return bool(self.status & _TEST_FAILED)

    @property
    def code(self) -> str:
        """SAE J2012 form: system letter, 4 characters, failure type, e.g. ``"P0301-00"``."""
        high = self.dtc >> 16
        system = _J2012_SYSTEMS[high >> 6]
        return (
            f"{system}{high >> 4 & 3}{high & 0xF:X}{self.dtc >> 8 & 0xFF:02X}-{self.dtc & 0xFF:02X}"
        )


def parse_uds_dtc_response(data: bytes) -> list[UdsDtc]:
    """Parse a positive ReadDTCInformation (0x59) response starting at the service id.

    Sub-functions 0x02, 0x0A, 0x0F, 0x13 and 0x15 are understood (availability
    mask, then 4-byte records of DTC and status); a trailing partial record is
    ignored. Raises ``ValueError`` for another service, another sub-function or a
    response too short to hold the mask.
    """
    if len(data) < 3 or data[0] != _UDS_READ_DTC_RESPONSE:
        raise ValueError("not a positive ReadDTCInformation response")
    subfunction = data[1] & 0x7F
    if subfunction not in _STATUS_RECORD_SUBFUNCTIONS:
        raise ValueError(f"unsupported ReadDTCInformation sub-function 0x{subfunction:02X}")
    return [
        UdsDtc(dtc=int.from_bytes(data[start : start + 3], "big"), status=data[start + 3])
        for start in range(3, len(data) - 3, 4)
    ]


@dataclass(frozen=True, slots=True)
class FaultChange:
    """A DTC that became active ("set") or stopped being active ("cleared").

    Mirrors the wire's ``FaultCode``: ``source`` is the J1939 source address or
    the UDS response id; ``time_us`` the CAN time of the report that changed it;
    ``spn``/``fmi``/``occurrences`` are J1939 only, ``dtc``/``status`` UDS only
    (0 otherwise). A cleared code repeats the last values seen while active,
    except for a UDS status reported in the clearing snapshot.
    """

    protocol: Protocol
    bus: str
    source: int
    code: str
    state: State
    time_us: int
    spn: int = 0
    fmi: int = 0
    occurrences: int = 0
    dtc: int = 0
    status: int = 0


_EcuKey = tuple[Protocol, str, int]


class FaultTracker:
    """Turn per-ECU DTC snapshots into :class:`FaultChange` events.

    Each update is the full list an ECU reports now: codes new since the
    previous snapshot of the same (protocol, bus, source) are set, codes missing
    from it are cleared. DM1 is broadcast about once a second while a fault is
    active, so with *j1939_expiry_s* set, :meth:`expire` clears every fault of a
    J1939 ECU that has sent no DM1 for that long in CAN time (powered off,
    unplugged bus). UDS answers only when asked, so its faults never expire.
    """

    __slots__ = ("_active", "_last_dm1_us", "j1939_expiry_s")

    def __init__(self, *, j1939_expiry_s: float | None = 5.0) -> None:
        self.j1939_expiry_s = j1939_expiry_s
        self._active: dict[_EcuKey, dict[object, FaultChange]] = {}
        self._last_dm1_us: dict[tuple[str, int], int] = {}

    def update_j1939(
        self, bus: str, source: int, timestamp_us: int, dtcs: Iterable[J1939Dtc]
    ) -> list[FaultChange]:
        """Apply one DM1 snapshot of ECU *source*; return what changed."""
        self._last_dm1_us[(bus, source)] = timestamp_us
        current: dict[object, FaultChange] = {}
        for dtc in dtcs:
            current[(dtc.spn, dtc.fmi)] = FaultChange(
                protocol="j1939_dm1",
                bus=bus,
                source=source,
                code=dtc.code,
                state="set",
                time_us=timestamp_us,
                spn=dtc.spn,
                fmi=dtc.fmi,
                occurrences=dtc.occurrences,
            )
        return self._apply(("j1939_dm1", bus, source), current, timestamp_us, {})

    def update_uds(
        self, bus: str, source: int, timestamp_us: int, dtcs: Iterable[UdsDtc]
    ) -> list[FaultChange]:
        """Apply one ReadDTCInformation snapshot from response id *source*."""
        current: dict[object, FaultChange] = {}
        statuses: dict[object, int] = {}
        for dtc in dtcs:
            statuses[dtc.dtc] = dtc.status
            if dtc.active:
                current[dtc.dtc] = FaultChange(
                    protocol="uds",
                    bus=bus,
                    source=source,
                    code=dtc.code,
                    state="set",
                    time_us=timestamp_us,
                    dtc=dtc.dtc,
                    status=dtc.status,
                )
        return self._apply(("uds", bus, source), current, timestamp_us, statuses)

    def expire(self, now_us: int) -> list[FaultChange]:
        """Clear the faults of J1939 ECUs silent for longer than the expiry."""
        if self.j1939_expiry_s is None:
            return []
        limit = now_us - round(self.j1939_expiry_s * 1_000_000)
        changes: list[FaultChange] = []
        for (bus, source), last in list(self._last_dm1_us.items()):
            if last < limit:
                del self._last_dm1_us[(bus, source)]
                changes += self._apply(("j1939_dm1", bus, source), {}, now_us, {})
        return changes

    def next_expiry_us(self) -> int | None:
        """CAN time at which :meth:`expire` would next clear something, if ever."""
        if self.j1939_expiry_s is None:
            return None
        active = [
            last
            for (bus, source), last in self._last_dm1_us.items()
            if self._active.get(("j1939_dm1", bus, source))
        ]
        return min(active) + round(self.j1939_expiry_s * 1_000_000) + 1 if active else None

    def active(self) -> list[FaultChange]:
        """Every code currently active, as last reported (state "set")."""
        return [change for codes in self._active.values() for change in codes.values()]

    def _apply(
        self,
        ecu: _EcuKey,
        current: dict[object, FaultChange],
        timestamp_us: int,
        statuses: dict[object, int],
    ) -> list[FaultChange]:
        previous = self._active.get(ecu, {})
        changes = [change for key, change in current.items() if key not in previous]
        for key, change in previous.items():
            if key not in current:
                changes.append(_cleared(change, timestamp_us, statuses.get(key, change.status)))
        if current:
            # The latest report of each code, so a clear repeats its last details.
            self._active[ecu] = current
        else:
            self._active.pop(ecu, None)
        return changes


def _cleared(change: FaultChange, time_us: int, status: int) -> FaultChange:
    return FaultChange(
        protocol=change.protocol,
        bus=change.bus,
        source=change.source,
        code=change.code,
        state="cleared",
        time_us=time_us,
        spn=change.spn,
        fmi=change.fmi,
        occurrences=change.occurrences,
        dtc=change.dtc,
        status=status,
    )
