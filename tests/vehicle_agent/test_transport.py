"""Transport-protocol reassembly: the CSS Electronics recordings (J1939 BAM and UDS
over ISO-TP) checked against an independent reassembly and decoded with their
DBC files, then synthetic sequences for every path the recordings do not take."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cantools.database.can import Message

from vehicle_agent.catalog import DbcSpec, j1939_pgn
from vehicle_agent.decoding import Decoder
from vehicle_agent.frames import Frame
from vehicle_agent.sources import LogSource
from vehicle_agent.transport import IsoTpReassembler, J1939Reassembler, TransportStats

ROOT = Path(__file__).resolve().parents[2]
TP_DIR = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"
EC1_PGN = 0xFEE3
VI_PGN = 0xFEEC


@pytest.fixture(scope="module")
def j1939_frames() -> list[Frame]:
    with LogSource(TP_DIR / "j1939_tp.MF4") as source:
        return list(source)


@pytest.fixture(scope="module")
def uds_frames() -> list[Frame]:
    with LogSource(TP_DIR / "uds_isotp.MF4") as source:
        return list(source)


def _reassemble(
    reassembler: J1939Reassembler | IsoTpReassembler, frames: list[Frame]
) -> list[Frame]:
    return [message for frame in frames if (message := reassembler.feed(frame)) is not None]


def _truncated(message: Message, data: bytes) -> dict[str, object]:
    """Decode with cantools directly, keeping the signals the payload holds."""
    decoded = message.decode(data, decode_choices=False, allow_truncated=True)
    assert isinstance(decoded, dict)
    return dict(decoded)


# --- the J1939 recording -------------------------------------------------------


def _bam_by_loop(frames: list[Frame]) -> list[tuple[int, bytes]]:
    """Independent BAM reassembly: a plain loop over the frame list, (PGN, payload)."""
    done: list[tuple[int, bytes]] = []
    pgn, size, parts = 0, 0, b""
    for frame in frames:
        pdu_format = frame.arbitration_id >> 16 & 0xFF
        if pdu_format == 0xEC and frame.data[0] == 0x20:
            pgn = int.from_bytes(frame.data[5:8], "little")
            size = int.from_bytes(frame.data[1:3], "little")
            parts = b""
        elif pdu_format == 0xEB and size:
            parts += frame.data[1:]
            if len(parts) >= size:
                done.append((pgn, parts[:size]))
                size = 0
    return done


def test_j1939_recording_completes_every_bam_session(j1939_frames: list[Frame]) -> None:
    reassembler = J1939Reassembler()
    messages = _reassemble(reassembler, j1939_frames)

    assert len(j1939_frames) == 1815
    assert sum(reassembler.handles(f) for f in j1939_frames) == 80  # 16 TP.CM + 64 TP.DT
    assert reassembler.stats == TransportStats(completed=16, bytes=16 * 28)
    assert reassembler.open_sessions == 0
    assert Counter(j1939_pgn(m.arbitration_id) for m in messages) == {EC1_PGN: 13, VI_PGN: 3}
    # Priority 7 from the TP.CM frame, PDU2 PGN, sender 0x00.
    assert {m.arbitration_id for m in messages} == {0x1CFEE300, 0x1CFEEC00}
    assert all(m.is_extended and m.channel == "1" and len(m.data) == 28 for m in messages)
    assert [(j1939_pgn(m.arbitration_id), m.data) for m in messages] == _bam_by_loop(j1939_frames)
    last_packet = [f for f in j1939_frames if f.arbitration_id == 0x1CEBFF00 and f.data[0] == 4]
    assert [m.timestamp for m in messages] == [f.timestamp for f in last_packet]


def test_j1939_recording_messages_hold_plausible_values(j1939_frames: list[Frame]) -> None:
    messages = _reassemble(J1939Reassembler(), j1939_frames)
    # tp_j1939.dbc does not mark itself as J1939 (empty ProtocolType, ExtendedCAN
    # frame format), so PGN matching has to be asked for.
    decoder = Decoder([DbcSpec(TP_DIR / "tp_j1939.dbc", j1939=True)])
    ec1 = decoder.bound[0].dbc.database.get_message_by_name("EC1")
    assert ec1.length == 40  # the DBC's maximum; the engine announces 28 bytes

    ec1_messages = [m for m in messages if j1939_pgn(m.arbitration_id) == EC1_PGN]
    speeds = [_truncated(ec1, m.data)["EngineSpeedAtPoint5"] for m in ec1_messages]
    assert Counter(speeds) == {1566.5: 12, 1600.0: 1}
    # SPN 188, engine speed at idle (point 1), bytes 0-1 at 0.125 rpm/bit.
    idle = {int.from_bytes(m.data[0:2], "little") * 0.125 for m in ec1_messages}
    assert idle == {850.0}

    for vi in (m for m in messages if j1939_pgn(m.arbitration_id) == VI_PGN):
        vin = vi.data[:17].decode("ascii")
        assert vin.isalnum()
        assert vin.isupper()
        assert vi.data.endswith(b"*")  # SPN 237 is '*'-delimited


def test_j1939_recording_decodes_through_decoder(j1939_frames: list[Frame]) -> None:
    messages = _reassemble(J1939Reassembler(), j1939_frames)
    decoder = Decoder([DbcSpec(TP_DIR / "tp_j1939.dbc", j1939=True)])
    for message in messages:
        decoder.decode(message)
    assert decoder.stats.decoded == 13


# --- the UDS recording ---------------------------------------------------------


def _isotp_by_loop(frames: list[Frame]) -> list[tuple[int, bytes]]:
    """Independent ISO-TP reassembly: first frame and consecutive frames only."""
    done: list[tuple[int, bytes]] = []
    open_: dict[int, tuple[int, bytes]] = {}
    for frame in frames:
        kind, ident = frame.data[0] >> 4, frame.arbitration_id
        if kind == 1:
            open_[ident] = ((frame.data[0] & 0xF) * 256 + frame.data[1], frame.data[2:])
        elif kind == 2 and ident in open_:
            length, parts = open_[ident]
            parts += frame.data[1:]
            open_[ident] = (length, parts)
            if len(parts) >= length:
                done.append((ident, bytes([length % 256]) + parts[:length]))
                del open_[ident]
    return done


def test_uds_recording_reassembles(uds_frames: list[Frame]) -> None:
    reassembler = IsoTpReassembler({0x7BB, 0x7EC})
    messages = _reassemble(reassembler, uds_frames)

    assert len(uds_frames) == 2010
    assert Counter((m.arbitration_id, len(m.data)) for m in messages) == {
        (0x7BB, 1 + 38): 150,
        (0x7EC, 1 + 62): 120,
    }
    # 30 first frames on 0x7EC are never followed by consecutive frames (the
    # tester's flow control never came): 29 time out, the last is still open.
    first_frames = Counter(f.arbitration_id for f in uds_frames if f.data[0] >> 4 == 1)
    assert first_frames == {0x7BB: 150, 0x7EC: 150}
    assert reassembler.stats == TransportStats(
        completed=270, bytes=150 * 38 + 120 * 62, timed_out=29
    )
    assert reassembler.open_sessions == 1
    assert [(m.arbitration_id, m.data) for m in messages] == _isotp_by_loop(uds_frames)


def test_uds_layout_keeps_the_length_byte_before_the_service_id(uds_frames: list[Frame]) -> None:
    messages = _reassemble(IsoTpReassembler({0x7BB, 0x7EC}), uds_frames)
    for message in messages:
        # Byte 0: the ISO-TP length; 0x62 (ReadDataByIdentifier response) in byte 1,
        # then the DID the DBC's signal names carry (0x220100 / 0x220101).
        assert message.data[0] == len(message.data) - 1
        assert message.data[1] == 0x62
        did = 0x0100 if message.arbitration_id == 0x7BB else 0x0101
        assert int.from_bytes(message.data[2:4], "big") == did


def test_uds_recording_decodes_with_its_dbc(uds_frames: list[Frame]) -> None:
    messages = _reassemble(IsoTpReassembler({0x7BB, 0x7EC}), uds_frames)
    decoder = Decoder([DbcSpec(TP_DIR / "tp_uds.dbc")])
    catalog = decoder.catalog
    values: dict[str, list[float]] = {}
    for message in messages:
        if message.arbitration_id == 0x7EC:
            for index, value in decoder.decode(message):
                values.setdefault(catalog[index].name, []).append(value)
    # Battery: 62 bytes in the DBC, 63 with the length byte: the excess is allowed.
    assert decoder.stats.decoded == 120
    assert set(values["service"]) == {0x62}
    assert set(values["response"]) == {0x0101}
    soc = values["M_SID_0x220101_StateOfChargeBMS"]
    assert len(soc) == 120
    assert all(0 <= v <= 100 for v in soc)
    assert set(soc) == {50.0}

    # Temperature is 54 bytes in the DBC but the ECU sends 38 (+1); read its
    # values with cantools directly, independently of the Decoder.
    temperature = decoder.bound[0].dbc.database.get_message_by_name("Temperature")
    outdoor = [
        _truncated(temperature, m.data)["M_SID_0x220100_OutdoorTemp"]
        for m in messages
        if m.arbitration_id == 0x7BB
    ]
    assert len(outdoor) == 150
    assert set(outdoor) == {7.0}  # degC, a Danish December day
    # IndoorTemp is multiplexed on service == 256 in the DBC, which never holds
    # (only Battery uses extended multiplexing); read its byte by hand instead.
    indoor = {m.data[9] * 0.5 - 40 for m in messages if m.arbitration_id == 0x7BB}
    assert indoor == {24.5}


# --- J1939 synthetic sequences -------------------------------------------------


def _cm(
    t: float, sa: int, da: int, payload: bytes, *, priority: int = 7, channel: str = "1"
) -> Frame:
    ident = priority << 26 | 0xEC << 16 | da << 8 | sa
    return Frame(t, ident, payload, is_extended=True, channel=channel)


def _bam(t: float, sa: int, pgn: int, size: int, *, priority: int = 6, channel: str = "1") -> Frame:
    packets = -(-size // 7)
    payload = bytes([0x20, size & 0xFF, size >> 8, packets, 0xFF]) + pgn.to_bytes(3, "little")
    return _cm(t, sa, 0xFF, payload, priority=priority, channel=channel)


def _rts(t: float, sa: int, da: int, pgn: int, size: int) -> Frame:
    packets = -(-size // 7)
    payload = bytes([0x10, size & 0xFF, size >> 8, packets, 2]) + pgn.to_bytes(3, "little")
    return _cm(t, sa, da, payload)


def _dt(t: float, sa: int, da: int, seq: int, message: bytes, *, channel: str = "1") -> Frame:
    chunk = message[(seq - 1) * 7 : seq * 7].ljust(7, b"\xff")
    return Frame(
        t, 7 << 26 | 0xEB << 16 | da << 8 | sa, bytes([seq]) + chunk, True, channel=channel
    )


MESSAGE_20 = bytes(range(1, 21))  # 20 bytes, 3 packets


def test_bam_in_order_builds_the_pdu2_id() -> None:
    reassembler = J1939Reassembler()
    assert reassembler.feed(_bam(0.0, 0x21, 0xFECA, 20)) is None
    assert reassembler.feed(_dt(0.05, 0x21, 0xFF, 1, MESSAGE_20)) is None
    assert reassembler.feed(_dt(0.10, 0x21, 0xFF, 2, MESSAGE_20)) is None
    message = reassembler.feed(_dt(0.15, 0x21, 0xFF, 3, MESSAGE_20))
    assert message == Frame(0.15, 0x18FECA21, MESSAGE_20, is_extended=True, channel="1")
    assert reassembler.stats == TransportStats(completed=1, bytes=20)


def test_rts_cts_builds_a_pdu1_id_with_the_destination() -> None:
    reassembler = J1939Reassembler()
    frames = [
        _rts(0.0, 0x21, 0x3D, 0xEF00, 20),
        _cm(0.01, 0x3D, 0x21, bytes([0x11, 2, 1, 0xFF, 0xFF, 0x00, 0xEF, 0x00])),  # CTS 1-2
        _dt(0.02, 0x21, 0x3D, 1, MESSAGE_20),
        _dt(0.03, 0x21, 0x3D, 2, MESSAGE_20),
        _cm(0.5, 0x3D, 0x21, bytes([0x11, 0, 0xFF, 0xFF, 0xFF, 0x00, 0xEF, 0x00])),  # hold
        _cm(1.4, 0x3D, 0x21, bytes([0x11, 1, 3, 0xFF, 0xFF, 0x00, 0xEF, 0x00])),  # CTS 3
        _dt(1.5, 0x21, 0x3D, 3, MESSAGE_20),
        _cm(1.6, 0x3D, 0x21, bytes([0x13, 20, 0, 3, 0xFF, 0x00, 0xEF, 0x00])),  # EOMA
    ]
    messages = _reassemble(reassembler, frames)
    assert messages == [Frame(1.5, 0x1CEF3D21, MESSAGE_20, is_extended=True, channel="1")]
    assert reassembler.stats == TransportStats(completed=1, bytes=20)


def test_out_of_order_and_duplicate_packets() -> None:
    reassembler = J1939Reassembler()
    frames = [
        _bam(0.0, 0x00, 0xFEE3, 20),
        _dt(0.1, 0x00, 0xFF, 3, MESSAGE_20),
        _dt(0.2, 0x00, 0xFF, 1, MESSAGE_20),
        _dt(0.3, 0x00, 0xFF, 1, MESSAGE_20),
        _dt(0.4, 0x00, 0xFF, 2, MESSAGE_20),
    ]
    messages = _reassemble(reassembler, frames)
    assert [m.data for m in messages] == [MESSAGE_20]
    stats = reassembler.stats
    assert (stats.completed, stats.out_of_sequence, stats.duplicates) == (1, 3, 1)


def test_missing_packet_times_out_by_can_time() -> None:
    reassembler = J1939Reassembler()
    frames = [
        _bam(0.0, 0x00, 0xFEE3, 20),
        _dt(0.1, 0x00, 0xFF, 1, MESSAGE_20),
        _dt(0.9, 0x00, 0xFF, 3, MESSAGE_20),  # 800 ms after the last packet: T1 passed
    ]
    assert _reassemble(reassembler, frames) == []
    assert reassembler.stats == TransportStats(timed_out=1, unexpected=1)
    # A session nobody finishes is swept by a later TP frame of anyone.
    reassembler.feed(_bam(2.0, 0x01, 0xFEE3, 20))
    reassembler.feed(_bam(3.0, 0x02, 0xFEE3, 20))
    assert reassembler.stats.timed_out == 2
    assert reassembler.open_sessions == 1


def test_abort_and_early_acknowledgement_end_sessions() -> None:
    reassembler = J1939Reassembler()
    abort = bytes([0xFF, 3, 0xFF, 0xFF, 0xFF, 0x00, 0xEF, 0x00])
    frames = [
        _rts(0.0, 0x21, 0x3D, 0xEF00, 20),
        _cm(0.01, 0x3D, 0x21, abort),  # the receiver aborts
        _dt(0.02, 0x21, 0x3D, 1, MESSAGE_20),
        _rts(1.0, 0x22, 0x3D, 0xEF00, 20),
        _dt(1.02, 0x22, 0x3D, 1, MESSAGE_20),
        _cm(1.1, 0x3D, 0x22, bytes([0x13, 20, 0, 3, 0xFF, 0x00, 0xEF, 0x00])),  # EOMA, 2 missing
    ]
    assert _reassemble(reassembler, frames) == []
    assert reassembler.stats == TransportStats(aborted=2, unexpected=1)
    assert reassembler.open_sessions == 0


def test_new_announcement_replaces_the_open_session() -> None:
    reassembler = J1939Reassembler()
    other = bytes(range(100, 120))
    frames = [
        _bam(0.0, 0x00, 0xFEE3, 20),
        _dt(0.1, 0x00, 0xFF, 1, MESSAGE_20),
        _bam(0.2, 0x00, 0xFEE3, 20),
        *(_dt(0.3 + seq / 10, 0x00, 0xFF, seq, other) for seq in (1, 2, 3)),
    ]
    assert [m.data for m in _reassemble(reassembler, frames)] == [other]
    assert reassembler.stats.replaced == 1


def test_sessions_are_bounded_and_keyed_by_channel() -> None:
    reassembler = J1939Reassembler(max_sessions=2)
    for sa, channel in ((0x01, "1"), (0x01, "2"), (0x02, "1")):
        reassembler.feed(_bam(0.0, sa, 0xFEE3, 20, channel=channel))
    assert reassembler.stats.dropped_sessions == 1  # the oldest: 0x01 on channel 1
    assert reassembler.feed(_dt(0.1, 0x01, 0xFF, 1, MESSAGE_20, channel="1")) is None
    assert reassembler.stats.unexpected == 1
    done = [
        reassembler.feed(_dt(0.1 + seq / 10, 0x01, 0xFF, seq, MESSAGE_20, channel="2"))
        for seq in (1, 2, 3)
    ]
    assert done[-1] is not None
    assert done[-1].channel == "2"


def test_non_tp_and_malformed_frames() -> None:
    reassembler = J1939Reassembler()
    plain = Frame(0.0, 0x0CF00400, bytes(8), is_extended=True)
    standard = Frame(0.0, 0x0EC, bytes(8))
    assert not reassembler.handles(plain)
    assert not reassembler.handles(standard)
    assert reassembler.feed(plain) is None
    assert reassembler.feed(standard) is None
    too_big = bytes([0x20, 30, 0, 3, 0xFF, 0xE3, 0xFE, 0x00])  # 30 bytes in 3 packets
    assert reassembler.feed(_cm(0.0, 0x00, 0xFF, too_big)) is None
    assert reassembler.feed(_cm(0.0, 0x00, 0xFF, bytes(4))) is None
    assert reassembler.stats == TransportStats(malformed=2)


# --- ISO-TP synthetic sequences ------------------------------------------------


def _std(t: float, ident: int, data: bytes, *, fd: bool = False) -> Frame:
    return Frame(t, ident, data, is_fd=fd, channel="1")


def _isotp_frames(t: float, ident: int, message: bytes) -> list[Frame]:
    frames = [_std(t, ident, bytes([0x10 | len(message) >> 8, len(message) & 0xFF]) + message[:6])]
    for n, start in enumerate(range(6, len(message), 7), start=1):
        chunk = message[start : start + 7].ljust(7, b"\xaa")
        frames.append(_std(t + n * 0.01, ident, bytes([0x20 | n % 16]) + chunk))
    return frames


def test_single_frame_keeps_the_length_byte_and_drops_padding() -> None:
    reassembler = IsoTpReassembler([0x7E8])
    message = reassembler.feed(_std(1.0, 0x7E8, bytes.fromhex("0362f190aaaaaaaa")))
    assert message == _std(1.0, 0x7E8, bytes.fromhex("0362f190"))
    assert reassembler.feed(_std(1.0, 0x7E0, bytes.fromhex("0322f190aaaaaaaa"))) is None
    assert reassembler.stats == TransportStats(completed=1, bytes=3)


def test_long_message_wraps_the_sequence_number() -> None:
    reassembler = IsoTpReassembler([0x7E8])
    payload = bytes(i % 251 for i in range(300))  # 43 consecutive frames: SN wraps twice
    frames = _isotp_frames(0.0, 0x7E8, payload)
    frames.insert(1, _std(0.001, 0x7E8, bytes.fromhex("300000aaaaaaaaaa")))  # flow control
    messages = _reassemble(reassembler, frames)
    assert [m.data for m in messages] == [bytes([300 & 0xFF]) + payload]
    assert reassembler.stats == TransportStats(completed=1, bytes=300)


def test_sequence_mismatch_aborts() -> None:
    reassembler = IsoTpReassembler([0x7E8])
    frames = _isotp_frames(0.0, 0x7E8, bytes(30))
    del frames[2]  # SN 2 lost
    assert _reassemble(reassembler, frames) == []
    assert reassembler.stats == TransportStats(aborted=1, out_of_sequence=1, unexpected=1)


def test_consecutive_frame_after_n_cr_times_out() -> None:
    reassembler = IsoTpReassembler([0x7E8])
    first, second, third = _isotp_frames(0.0, 0x7E8, bytes(20))
    late = _std(second.timestamp + 1.5, 0x7E8, third.data)
    assert _reassemble(reassembler, [first, second, late]) == []
    assert reassembler.stats == TransportStats(timed_out=1, unexpected=1)


def test_single_frame_interrupts_and_first_frame_replaces() -> None:
    reassembler = IsoTpReassembler([0x7E8])
    frames = _isotp_frames(0.0, 0x7E8, bytes(20))
    messages = _reassemble(
        reassembler,
        [frames[0], _std(0.005, 0x7E8, bytes.fromhex("027f22")), frames[0], *frames],
    )
    assert [m.data for m in messages] == [bytes.fromhex("027f22"), bytes([20]) + bytes(20)]
    assert (reassembler.stats.aborted, reassembler.stats.replaced) == (1, 1)


def test_can_fd_escapes() -> None:
    reassembler = IsoTpReassembler(lambda ident, extended: extended and ident >> 8 == 0x18DAF1)
    single = bytes([0x00, 40]) + bytes(range(40)) + bytes(22)  # 64-byte FD frame
    fd = Frame(0.0, 0x18DAF110, single, is_extended=True, is_fd=True)
    message = reassembler.feed(fd)
    assert message is not None
    assert message.data == bytes([40]) + bytes(range(40))

    payload = bytes(i % 256 for i in range(5000))  # over 4095: the 32-bit length escape
    first = bytes([0x10, 0x00]) + len(payload).to_bytes(4, "big") + payload[:58]
    frames = [Frame(1.0, 0x18DAF110, first, is_extended=True, is_fd=True)]
    for n, start in enumerate(range(58, len(payload), 63), start=1):
        data = bytes([0x20 | n % 16]) + payload[start : start + 63].ljust(63, b"\xcc")
        frames.append(Frame(1.0 + n / 1000, 0x18DAF110, data, is_extended=True, is_fd=True))
    messages = _reassemble(reassembler, frames)
    assert [m.data for m in messages] == [bytes([5000 & 0xFF]) + payload]
    assert messages[0].is_fd
    assert messages[0].is_extended
    assert not reassembler.handles(Frame(0.0, 0x18DAF110, bytes(8)))  # 11-bit: not configured


def test_isotp_bounds_length_and_sessions() -> None:
    reassembler = IsoTpReassembler(range(0x700, 0x710), max_sessions=2, max_length=100)
    assert reassembler.feed(_std(0.0, 0x700, bytes.fromhex("1065620100000000"))) is None
    assert reassembler.stats.malformed == 1  # 101 bytes announced
    for ident in (0x701, 0x702, 0x703):
        reassembler.feed(_isotp_frames(0.0, ident, bytes(20))[0])
    assert (reassembler.stats.dropped_sessions, reassembler.open_sessions) == (1, 2)
    assert reassembler.feed(_std(0.0, 0x704, bytes.fromhex("0700"))) is None  # SF_DL > data
    assert reassembler.stats.malformed == 2
