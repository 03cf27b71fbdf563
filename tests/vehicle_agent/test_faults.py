"""Fault codes: DM1 and UDS 0x59 parsing, the tracker's set/cleared/expiry logic,
and the diagnostics tap on synthetic buses and the real recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vehicle_agent.diagnostics import DiagnosticsTap
from vehicle_agent.faults import (
    FaultChange,
    FaultTracker,
    J1939Dtc,
    UdsDtc,
    parse_dm1,
    parse_uds_dtc_response,
)
from vehicle_agent.frames import Frame
from vehicle_agent.sources import LogSource

ROOT = Path(__file__).resolve().parents[2]
TP_DIR = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"


def _dtc_bytes(spn: int, fmi: int, occurrences: int, cm: int = 0) -> bytes:
    # As a 32-bit little-endian word: SPN bits 0-15, FMI 16-20, SPN bits 16-18 at
    # 21-23, occurrences 24-30, conversion method 31.
    word = (spn & 0xFFFF) | fmi << 16 | (spn >> 16) << 21 | occurrences << 24 | cm << 31
    return word.to_bytes(4, "little")


def _dm1(lamps: int, *dtcs: tuple[int, ...]) -> bytes:
    return bytes([lamps, 0xFF]) + b"".join(_dtc_bytes(*dtc) for dtc in dtcs)


# --- DM1 -----------------------------------------------------------------------


def test_parse_dm1_reads_several_dtcs_back() -> None:
    dtcs = [(520, 3, 1), (524287, 31, 126), (100, 1, 5), (0x40000, 17, 0)]
    dm1 = parse_dm1(_dm1(0b01_00_01_00, *dtcs))
    assert [(d.spn, d.fmi, d.occurrences) for d in dm1.dtcs] == dtcs
    assert (dm1.malfunction_lamp, dm1.red_stop_lamp, dm1.amber_warning_lamp) == (1, 0, 1)
    assert dm1.protect_lamp == 0
    assert dm1.malfunction_flash == 3
    assert dm1.dtcs[0].code == "SPN 520 FMI 3"


def test_parse_dm1_known_vector_and_conversion_method() -> None:
    # SPN 1569 (0x621) FMI 31, occurrence count 1, as printed in J1939 examples.
    dm1 = parse_dm1(bytes.fromhex("0400 21061f01 ffff"))
    assert dm1.dtcs == (J1939Dtc(spn=1569, fmi=31, occurrences=1),)
    legacy = parse_dm1(_dm1(0, (190, 2, 3, 1)))
    assert legacy.dtcs == (J1939Dtc(spn=190, fmi=2, occurrences=3, conversion_method=1),)


@pytest.mark.parametrize(
    "payload",
    [
        "0000000000000000",  # SPN 0 / FMI 0 placeholder
        "00ff00000000ffff",  # placeholder, padded
        "0000ffffffffffff",  # all padding
        "0000",  # lamps only
    ],
)
def test_parse_dm1_no_active_dtc(payload: str) -> None:
    assert parse_dm1(bytes.fromhex(payload)).dtcs == ()


def test_parse_dm1_too_short() -> None:
    with pytest.raises(ValueError, match="at least 2 bytes"):
        parse_dm1(b"\x00")


# --- UDS 0x59 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtc", "code"),
    [
        (0x030100, "P0301-00"),
        (0xC07300, "U0073-00"),
        (0x9A1F13, "B1A1F-13"),
        (0x412345, "C0123-45"),
        (0x3FFFFF, "P3FFF-FF"),
    ],
)
def test_uds_dtc_code_is_j2012(dtc: int, code: str) -> None:
    assert UdsDtc(dtc=dtc, status=0).code == code


@pytest.mark.parametrize("subfunction", [0x02, 0x0A])
def test_parse_uds_dtc_response(subfunction: int) -> None:
    data = bytes([0x59, subfunction, 0xFF]) + bytes.fromhex("03010009 c0730008 9a1f1301 00")
    assert parse_uds_dtc_response(data) == [
        UdsDtc(dtc=0x030100, status=0x09),
        UdsDtc(dtc=0xC07300, status=0x08),
        UdsDtc(dtc=0x9A1F13, status=0x01),
    ]
    assert parse_uds_dtc_response(bytes([0x59, subfunction, 0xFF])) == []


@pytest.mark.parametrize(
    ("data", "match"),
    [("7f1931", "positive"), ("5901ff0001", "sub-function 0x01"), ("5902", "positive")],
)
def test_parse_uds_dtc_response_refuses(data: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_uds_dtc_response(bytes.fromhex(data))


# --- FaultTracker --------------------------------------------------------------


def test_tracker_sets_and_clears_j1939_codes_per_ecu() -> None:
    tracker = FaultTracker()
    a, b = J1939Dtc(520, 3, 1), J1939Dtc(100, 1, 1)
    first = tracker.update_j1939("can", 0x00, 1_000_000, [a, b])
    assert [(c.code, c.state) for c in first] == [
        ("SPN 520 FMI 3", "set"),
        ("SPN 100 FMI 1", "set"),
    ]
    assert first[0] == FaultChange(
        protocol="j1939_dm1", bus="can", source=0, code="SPN 520 FMI 3", state="set",
        time_us=1_000_000, spn=520, fmi=3, occurrences=1,
    )  # fmt: skip
    # The same codes again (a higher count is no change); another ECU is independent.
    assert tracker.update_j1939("can", 0x00, 2_000_000, [J1939Dtc(520, 3, 2), b]) == []
    assert len(tracker.update_j1939("can", 0x03, 2_000_000, [a])) == 1
    cleared = tracker.update_j1939("can", 0x00, 3_000_000, [b])
    assert [(c.code, c.state, c.time_us, c.occurrences) for c in cleared] == [
        ("SPN 520 FMI 3", "cleared", 3_000_000, 2)
    ]
    assert len(tracker.active()) == 2


def test_tracker_expires_silent_j1939_ecus() -> None:
    tracker = FaultTracker(j1939_expiry_s=3.0)
    tracker.update_j1939("can", 0x00, 1_000_000, [J1939Dtc(520, 3, 1)])
    assert tracker.next_expiry_us() == 4_000_001
    assert tracker.expire(4_000_000) == []
    changes = tracker.expire(4_000_001)
    assert [(c.code, c.state, c.time_us) for c in changes] == [
        ("SPN 520 FMI 3", "cleared", 4_000_001)
    ]
    assert tracker.next_expiry_us() is None
    assert tracker.active() == []
    assert FaultTracker(j1939_expiry_s=None).expire(10**12) == []


def test_tracker_uds_active_means_test_failed() -> None:
    tracker = FaultTracker()
    snapshot = [UdsDtc(0x030100, 0x09), UdsDtc(0xC07300, 0x08)]  # only P0301 testFailed
    assert [(c.code, c.status) for c in tracker.update_uds("can", 0x7E8, 5, snapshot)] == [
        ("P0301-00", 0x09)
    ]
    cleared = tracker.update_uds("can", 0x7E8, 6, [UdsDtc(0x030100, 0x08)])
    assert [(c.code, c.state, c.status, c.dtc) for c in cleared] == [
        ("P0301-00", "cleared", 0x08, 0x030100)
    ]
    assert tracker.update_uds("can", 0x7E8, 7, []) == []
    # UDS answers on request only: it never expires.
    tracker.update_uds("can", 0x7E8, 8, [UdsDtc(0x030100, 0x01)])
    assert tracker.expire(10**12) == []
    assert len(tracker.active()) == 1


# --- DiagnosticsTap ------------------------------------------------------------


def _dm1_frame(t: float, sa: int, data: bytes, channel: str = "1") -> Frame:
    return Frame(t, 0x18FECA00 | sa, data, is_extended=True, channel=channel)


def _bam_frames(t: float, sa: int, pgn: int, message: bytes) -> list[Frame]:
    packets = -(-len(message) // 7)
    cm = bytes([0x20, len(message), 0, packets, 0xFF]) + pgn.to_bytes(3, "little")
    frames = [Frame(t, 0x1CECFF00 | sa, cm, is_extended=True, channel="1")]
    for seq in range(1, packets + 1):
        chunk = message[(seq - 1) * 7 : seq * 7].ljust(7, b"\xff")
        frames.append(Frame(t + seq / 20, 0x1CEBFF00 | sa, bytes([seq]) + chunk, True, channel="1"))
    return frames


def test_tap_passes_ordinary_frames_and_consumes_transport_pieces() -> None:
    tap = DiagnosticsTap(isotp_ids=[0x7E8])
    plain = Frame(0.0, 0x0CF00400, bytes(8), is_extended=True, channel="1")
    assert tap.feed(plain) is plain
    assert tap.feed(plain) is plain
    dm1 = _dm1(0x04, (520, 3, 1), (100, 1, 1), (190, 0, 4))  # 14 bytes: BAM
    fed = [tap.feed(f) for f in _bam_frames(1.0, 0x00, 0xFECA, dm1)]
    assert fed[:-1] == [None, None]
    message = fed[-1]
    # Priority 7 comes from the TP.CM frame.
    assert message is not None
    assert message.arbitration_id == 0x1CFECA00
    assert message.data == dm1
    assert [(c.code, c.state, c.time_us) for c in tap.drain_changes()] == [
        ("SPN 520 FMI 3", "set", 1_100_000),
        ("SPN 100 FMI 1", "set", 1_100_000),
        ("SPN 190 FMI 0", "set", 1_100_000),
    ]
    assert tap.drain_changes() == []

    # Single-frame DM1 one second later: two codes gone; the frame itself is decoded.
    single = _dm1_frame(2.0, 0x00, _dm1(0x04, (520, 3, 1)))
    assert tap.feed(single) is single
    assert {(c.code, c.state) for c in tap.drain_changes()} == {
        ("SPN 100 FMI 1", "cleared"),
        ("SPN 190 FMI 0", "cleared"),
    }
    assert tap.stats.dm1_messages == 2


def test_tap_expires_dm1_on_any_frame_time() -> None:
    tap = DiagnosticsTap(bus_names={"1": "powertrain"}, tracker=FaultTracker(j1939_expiry_s=3.0))
    tap.feed(_dm1_frame(10.0, 0x03, _dm1(0x04, (520, 3, 1))))
    assert [(c.bus, c.source) for c in tap.drain_changes()] == [("powertrain", 3)]
    plain = Frame(12.5, 0x123, bytes(8), channel="1")
    tap.feed(plain)
    assert tap.drain_changes() == []
    tap.feed(Frame(13.1, 0x123, bytes(8), channel="1"))
    assert [(c.code, c.state, c.time_us) for c in tap.drain_changes()] == [
        ("SPN 520 FMI 3", "cleared", 13_100_000)
    ]


def test_tap_tracks_uds_dtc_responses_over_isotp() -> None:
    tap = DiagnosticsTap(isotp_ids=[0x7E8])
    response = bytes([0x59, 0x02, 0xFF]) + bytes.fromhex("03010009 c0730009 9a1f1308")
    first = bytes([0x10, len(response)]) + response[:6]
    frames = [
        Frame(1.0, 0x7E8, first, channel="1"),
        Frame(1.001, 0x7E0, bytes.fromhex("3000000000000000"), channel="1"),  # not ISO-TP here
        Frame(1.01, 0x7E8, bytes([0x21]) + response[6:13], channel="1"),
        Frame(1.02, 0x7E8, bytes([0x22]) + response[13:].ljust(7, b"\xaa"), channel="1"),
    ]
    out = [tap.feed(f) for f in frames]
    assert out[0] is None
    assert out[1] is frames[1]
    assert out[2] is None
    assert out[3] is not None
    assert out[3].data == bytes([len(response)]) + response
    assert [(c.protocol, c.source, c.code) for c in tap.drain_changes()] == [
        ("uds", 0x7E8, "P0301-00"),
        ("uds", 0x7E8, "U0073-00"),
    ]
    # Single-frame answer: nothing failed any more.
    tap.feed(Frame(2.0, 0x7E8, bytes.fromhex("0659020f9a1f1308"), channel="1"))
    assert {(c.code, c.state) for c in tap.drain_changes()} == {
        ("P0301-00", "cleared"),
        ("U0073-00", "cleared"),
    }
    tap.feed(Frame(3.0, 0x7E8, bytes.fromhex("0359ffff"), channel="1"))
    assert (tap.stats.uds_dtc_responses, tap.stats.unparsed) == (2, 1)


def test_tap_limits_j1939_to_its_channels_and_bounds_changes() -> None:
    tap = DiagnosticsTap(j1939_channels=["1"], max_changes=2)
    other = _dm1_frame(1.0, 0x00, _dm1(0x04, (520, 3, 1)), channel="2")
    assert tap.feed(other) is other
    assert tap.stats.dm1_messages == 0
    tap.feed(_dm1_frame(1.0, 0x00, _dm1(0x04, (1, 1, 1), (2, 2, 2), (3, 3, 3))[:8]))
    tap.feed(_dm1_frame(1.0, 0x01, _dm1(0x04, (4, 4, 4))))
    tap.feed(_dm1_frame(1.0, 0x02, _dm1(0x04, (5, 5, 5))))
    assert [c.spn for c in tap.drain_changes()] == [4, 5]
    assert (tap.stats.changes, tap.stats.dropped_changes) == (3, 1)


@pytest.fixture(scope="module")
def recordings() -> list[list[Frame]]:
    result = []
    for name in ("j1939_tp.MF4", "uds_isotp.MF4"):
        with LogSource(TP_DIR / name) as source:
            result.append(list(source))
    return result


def test_tap_on_the_recordings(recordings: list[list[Frame]]) -> None:
    j1939, uds = recordings
    tap = DiagnosticsTap()
    out = [m for f in j1939 if (m := tap.feed(f)) is not None]
    # 80 TP pieces consumed, 16 messages added; neither recording holds DTCs.
    assert len(out) == 1815 - 80 + 16
    tap = DiagnosticsTap(isotp_ids={0x7BB, 0x7EC})
    out = [m for f in uds if (m := tap.feed(f)) is not None]
    assert len(out) == 270
    assert tap.drain_changes() == []
    assert tap.stats.dm1_messages == 0
