"""Decoder tests: equality with cantools over its own DBC corpus, J1939 matching,
reference values from the bundled real recordings, and skipped-frame accounting."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import can
import cantools
import pytest
from cantools.database.can import Database as CanDatabase
from cantools.database.can import Message, Signal
from cantools.database.errors import DecodeError, EncodeError, UnsupportedDatabaseFormatError

from tests.vehicle_agent.values import same_value
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import DbcError
from vehicle_agent.frames import Frame

ROOT = Path(__file__).resolve().parents[2]
CANTOOLS_DIR = ROOT / "tests" / "data" / "cantools-dbc"
CANTOOLS_DBCS = sorted(p for p in CANTOOLS_DIR.iterdir() if p.suffix.lower() == ".dbc")
# Files cantools itself refuses even with strict=False (see the report in the
# test below); anything else in the corpus must load.
KNOWN_REJECTED = {
    "incorrect-sig_valtype.dbc",  # SIG_VALTYPE_ for a signal that does not exist
    "incorrect-val.dbc",  # VAL_ for a message that does not exist
    "issue_199.dbc",  # standard frame id wider than 11 bits
    "issue_199_extended.dbc",  # extended frame id wider than 29 bits
}
J1939_DBC = ROOT / "tools" / "demo_data" / "truck-j1939" / "CSS-Electronics-SAE-J1939-DEMO.dbc"
TRUCK_GNSS_DBC = ROOT / "tools" / "demo_data" / "truck-j1939" / "canmod-gps.dbc"
DRIVE_DBC = ROOT / "tools" / "demo_data" / "drive-gnss" / "canmod-gps.dbc"
TRUCK_MF4 = ROOT / "tools" / "demo_data" / "truck-j1939" / "truck_idle_127s.MF4"


# ---------------------------------------------------------------- helpers


def _pgn(frame_id: int) -> int:
    """J1939 PGN, written independently of the code under test."""
    data_page_and_format = (frame_id >> 16) & 0x3FF
    specific = (frame_id >> 8) & 0xFF
    if data_page_and_format & 0xFF >= 0xF0:  # PDU2: the specific byte is a group extension
        return (data_page_and_format << 8) | specific
    return data_page_and_format << 8


def _owner(messages: Sequence[Message], message: Message, j1939: bool) -> Message:
    """The first message of the file that claims the same frames as ``message``."""

    def key(m: Message) -> tuple[bool, int]:
        if j1939 and m.is_extended_frame:
            return (True, _pgn(m.frame_id))
        return (m.is_extended_frame, m.frame_id)

    return next(m for m in messages if key(m) == key(message))


def _mux_assignments(tree: Sequence[Any]) -> Iterator[dict[str, int]]:
    """Every combination of multiplexer values in a cantools signal tree."""
    choices: list[list[dict[str, int]]] = []
    for node in tree:
        if isinstance(node, dict):
            for mux, branches in node.items():
                options: list[dict[str, int]] = []
                for value, subtree in branches.items():
                    options.extend({mux: value, **sub} for sub in _mux_assignments(subtree))
                choices.append(options)
    for combination in itertools.product(*choices):
        merged: dict[str, int] = {}
        for part in combination:
            merged.update(part)
        yield merged


def _raw_values(signal: Signal) -> list[int | float]:
    if signal.is_float:
        return [0.0, 1.5, -2.25]
    bits = signal.length
    if signal.is_signed:
        return [0, -(1 << (bits - 1)), (1 << (bits - 1)) - 1]
    return [0, (1 << bits) - 1, (1 << bits) // 3]


def _payloads(message: Message, seed: str) -> list[bytes]:
    length = message.length
    rng = random.Random(seed)
    payloads = [bytes(length), b"\xff" * length]
    payloads += [rng.randbytes(length) for _ in range(3)]
    for assignment in itertools.islice(_mux_assignments(message.signal_tree), 64):
        for column in range(3):
            raw = {s.name: _raw_values(s)[column] for s in message.signals}
            raw.update(assignment)
            try:
                payloads.append(message.encode(raw, scaling=False, strict=False))
            except (EncodeError, KeyError, ValueError, OverflowError):
                continue  # a combination cantools cannot encode: the raw patterns remain
    return list(dict.fromkeys(payloads))


def _named(decoder: Decoder, samples: list[tuple[int, int | float]]) -> dict[str, int | float]:
    named = {decoder.catalog[index].name: value for index, value in samples}
    assert len(named) == len(samples)
    return named


def _cantools_rejects(path: Path) -> str | None:
    try:
        cantools.database.load_file(path, database_format="dbc", strict=False)
    except UnsupportedDatabaseFormatError as exc:
        return str(exc)
    return None


def _load_can(path: Path, frame_id_mask: int | None) -> CanDatabase:
    database = cantools.database.load_file(path, frame_id_mask=frame_id_mask, strict=False)
    assert isinstance(database, CanDatabase)
    return database


# ---------------------------------------------------------------- cantools corpus


@pytest.mark.parametrize("path", CANTOOLS_DBCS, ids=[p.name for p in CANTOOLS_DBCS])
def test_decode_matches_cantools(path: Path) -> None:
    rejection = _cantools_rejects(path)
    if rejection is not None:
        with pytest.raises(DbcError, match=path.name) as info:
            Decoder([DbcSpec(path)])
        assert info.value.path == path
        return  # cantools itself rejects the file: the clear error is what we owe

    decoder = Decoder([DbcSpec(path)])
    bound = decoder.bound[0]
    messages = bound.dbc.database.messages
    exercised = decoded = 0
    for message in messages:
        owner = _owner(messages, message, bound.j1939)
        for payload in _payloads(message, f"{path.name}:{message.name}"):
            frame = Frame(
                timestamp=1.0,
                arbitration_id=message.frame_id,
                data=payload,
                is_extended=message.is_extended_frame,
                is_fd=message.is_fd,
            )
            errors_before = decoder.stats.decode_errors
            samples = decoder.decode(frame)
            exercised += 1
            try:
                expected = owner.decode(payload, decode_choices=False)
            except DecodeError:
                assert samples == []
                assert decoder.stats.decode_errors == errors_before + 1
                continue
            assert isinstance(expected, dict)
            decoded += 1
            got = _named(decoder, samples)
            assert got.keys() == expected.keys(), (message.name, payload.hex())
            for name, value in expected.items():
                assert same_value(got[name], value), (message.name, name, payload.hex())
            assert {decoder.catalog[i].message for i, _ in samples} <= {owner.name}

    stats = decoder.stats
    assert stats.frames == exercised
    assert exercised >= sum(3 if m.length else 1 for m in messages)
    assert stats.decoded == decoded
    assert stats.decoded + stats.decode_errors == exercised
    assert stats.unknown_id == stats.error_frames == stats.remote_frames == 0


def test_cantools_corpus_is_mostly_loadable() -> None:
    # Guards the parametrised test above against silently skipping everything.
    rejected = {p.name for p in CANTOOLS_DBCS if _cantools_rejects(p) is not None}
    assert rejected <= KNOWN_REJECTED
    loadable = [p for p in CANTOOLS_DBCS if p.name not in rejected]
    assert len(loadable) >= 80
    decoder = Decoder([DbcSpec(p, bus=p.stem) for p in loadable])
    assert len(decoder.catalog) > 1000


def test_extended_id_below_0x800_needs_its_flag() -> None:
    decoder = Decoder([DbcSpec(CANTOOLS_DIR / "fd_test.dbc")])
    message = decoder.bound[0].dbc.database.get_message_by_name("TestMsg_Ex")
    assert message.is_extended_frame
    assert message.frame_id <= 0x7FF
    data = bytes(message.length)
    assert decoder.decode(Frame(0.0, message.frame_id, data, is_extended=True)) != []
    assert decoder.decode(Frame(0.0, message.frame_id, data, is_extended=False)) == []
    assert decoder.stats.unknown_id == 1


# ---------------------------------------------------------------- J1939


def test_j1939_matches_pgn_ignoring_priority_and_source() -> None:
    decoder = Decoder([DbcSpec(J1939_DBC, bus="j1939")])
    assert decoder.bound[0].j1939
    eec1 = decoder.bound[0].dbc.database.get_message_by_name("EEC1")
    data = bytes([0xFF, 0xFF, 0xFF, 0x68, 0x13, 0xFF, 0xFF, 0xFF])
    speed = decoder.catalog.index_of("j1939", "EEC1", "EngineSpeed")
    assert eec1.frame_id == 0x0CF004FE
    for frame_id in (eec1.frame_id, 0x18F00400, 0x1CF00417, 0x00F004FF):
        samples = decoder.decode(Frame(0.0, frame_id, data, is_extended=True))
        assert samples == [(speed, 0x1368 * 0.125)], hex(frame_id)
    # Same low 11 bits as a standard frame: not J1939, not EEC1.
    assert decoder.decode(Frame(0.0, eec1.frame_id & 0x7FF, data)) == []
    # Another PGN (0xF005) from the same source.
    assert decoder.decode(Frame(0.0, 0x0CF005FE, data, is_extended=True)) == []
    assert decoder.stats.decoded == 4
    assert decoder.stats.unknown_id == 2


def test_j1939_forced_off_matches_exact_ids() -> None:
    decoder = Decoder([DbcSpec(J1939_DBC, j1939=False)])
    assert not decoder.bound[0].j1939
    data = bytes(8)
    assert decoder.decode(Frame(0.0, 0x0CF004FE, data, is_extended=True)) != []
    assert decoder.decode(Frame(0.0, 0x18F00400, data, is_extended=True)) == []


PDU1_DBC = """VERSION ""
NS_ :
BS_:
BU_:
BO_ 2565472510 Request: 3 Vector__XXX
 SG_ RequestedPGN : 0|24@1+ (1,0) [0|16777215] "" Vector__XXX
BA_DEF_  "ProtocolType" STRING ;
BA_DEF_DEF_  "ProtocolType" "";
BA_ "ProtocolType" "J1939";
"""


def test_j1939_pdu1_ignores_destination_address(tmp_path: Path) -> None:
    path = tmp_path / "pdu1.dbc"
    path.write_text(PDU1_DBC)
    decoder = Decoder([DbcSpec(path)])  # ProtocolType J1939: detected
    message = decoder.bound[0].dbc.database.get_message_by_name("Request")
    assert message.frame_id == 0x18EA00FE
    assert decoder.catalog[0].pgn == 0xEA00
    data = (0xFEEC).to_bytes(3, "little")
    for frame_id in (0x18EAFFFE, 0x18EA21FE, 0x1CEA0000, 0x19EA00FE):
        samples = decoder.decode(Frame(0.0, frame_id, data, is_extended=True))
        assert samples == ([] if frame_id == 0x19EA00FE else [(0, 0xFEEC)]), hex(frame_id)
    # 0x19EA00FE has data page 1: another PGN.
    assert decoder.stats.unknown_id == 1
    assert decoder.decode(Frame(0.0, 0x18EB21FE, data, is_extended=True)) == []


def test_j1939_database_keeps_standard_messages_exact() -> None:
    decoder = Decoder([DbcSpec(CANTOOLS_DIR / "vframeformat_int.dbc")])
    assert decoder.bound[0].j1939
    assert decoder.decode(Frame(0.0, 0x7, bytes(8))) != []
    assert decoder.decode(Frame(0.0, 0x7, bytes(8), is_extended=True)) == []


# ---------------------------------------------------------------- real recordings


def _values(decoder: Decoder, frames: list[Frame], index: int) -> list[int | float]:
    return [value for frame in frames for i, value in decoder.decode(frame) if i == index]


def test_drive_reference_values(drive_frames: list[Frame]) -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC, bus="gnss")])
    speed = decoder.catalog.index_of("gnss", "gnss_speed", "Speed")
    latitude = decoder.catalog.index_of("gnss", "gnss_pos", "Latitude")
    speeds: list[float] = []
    latitudes: list[float] = []
    for frame in drive_frames:
        for index, value in decoder.decode(frame):
            if index == speed:
                speeds.append(value)
            elif index == latitude:
                latitudes.append(value)
    assert decoder.stats.frames == 65_296
    assert decoder.stats.decoded == 57_604
    assert decoder.stats.decode_errors == 0
    assert len(speeds) == 510
    assert statistics.fmean(speeds) == pytest.approx(9.499214, abs=1e-6)
    assert statistics.fmean(latitudes) == pytest.approx(56.105229, abs=1e-6)


def test_truck_reference_values(truck_frames: list[Frame]) -> None:
    j1939 = Decoder([DbcSpec(J1939_DBC, bus="j1939", channel="1")])
    gnss = Decoder([DbcSpec(TRUCK_GNSS_DBC, bus="gnss", channel="2")])
    engine_speed = _values(
        j1939, truck_frames, j1939.catalog.index_of("j1939", "EEC1", "EngineSpeed")
    )
    for frame in truck_frames:
        gnss.decode(frame)
    assert j1939.stats.decoded == 13_991
    assert len(engine_speed) == 12_719
    assert statistics.fmean(engine_speed) == pytest.approx(650.048569, abs=1e-6)
    assert gnss.stats.decoded == 12_278
    # Both DBCs in one decoder, each bound to its channel, give the same counts.
    both = Decoder(
        [
            DbcSpec(J1939_DBC, bus="j1939", channel="1"),
            DbcSpec(TRUCK_GNSS_DBC, bus="gnss", channel="2"),
        ]
    )
    for frame in truck_frames:
        both.decode(frame)
    assert both.stats.decoded == 13_991 + 12_278


def test_truck_matches_independent_cantools_loop(truck_frames: list[Frame]) -> None:
    """python-can + cantools with the J1939 frame-id mask, without our code."""
    reference: list[tuple[str, float, object]] = []
    databases: dict[object, CanDatabase] = {
        1: _load_can(J1939_DBC, frame_id_mask=0x03FFFF00),
        2: _load_can(TRUCK_GNSS_DBC, frame_id_mask=None),
    }
    with can.LogReader(TRUCK_MF4) as reader:
        for msg in reader:
            database = databases.get(msg.channel)
            if database is None:
                continue
            try:
                message = database.get_message_by_frame_id(
                    msg.arbitration_id, force_extended_id=msg.is_extended_id
                )
            except KeyError:
                continue
            decoded = message.decode(bytes(msg.data), decode_choices=False)
            assert isinstance(decoded, dict)
            reference += [(name, msg.timestamp, v) for name, v in decoded.items()]

    decoder = Decoder(
        [
            DbcSpec(J1939_DBC, bus="j1939", channel="1"),
            DbcSpec(TRUCK_GNSS_DBC, bus="gnss", channel="2"),
        ]
    )
    ours: list[tuple[str, float, object]] = [
        (decoder.catalog[index].name, frame.timestamp, value)
        for frame in truck_frames
        for index, value in decoder.decode(frame)
    ]
    assert len(ours) > 90_000
    assert ours == reference


# ---------------------------------------------------------------- skipped frames


def test_bad_frames_are_counted_never_raised() -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    stats = decoder.stats
    assert decoder.decode(Frame(0.0, 0x7FF, bytes(8))) == []
    assert decoder.decode(Frame(0.0, 0x7, bytes(8), is_extended=True)) == []
    assert (stats.unknown_id, stats.decode_errors) == (2, 0)
    assert decoder.decode(Frame(0.0, 0x7, bytes(4))) == []  # gnss_speed is 5 bytes
    assert decoder.decode(Frame(0.0, 0x3, b"")) == []
    assert stats.decode_errors == 2
    assert decoder.decode(Frame(0.0, 0x7, bytes(5), is_error=True)) == []
    assert decoder.decode(Frame(0.0, 0x7, b"", is_remote=True)) == []
    assert (stats.error_frames, stats.remote_frames) == (1, 1)
    assert decoder.decode(Frame(0.0, 0x7, bytes(8))) != []  # longer than needed: fine
    assert stats.frames == 7
    assert stats.decoded == 1
    assert stats.skipped == 6
    assert stats.by_reason() == {
        "unknown_id": 2,
        "decode_error": 2,
        "error_frame": 1,
        "remote_frame": 1,
        "not_selected": 0,
        "unchanged": 0,
    }


def test_channel_filter() -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC, channel="2")])
    data = bytes(5)
    assert decoder.decode(Frame(0.0, 0x7, data, channel="2")) != []
    assert decoder.decode(Frame(0.0, 0x7, data, channel="1")) == []
    assert decoder.decode(Frame(0.0, 0x7, data)) == []
    assert decoder.stats.unknown_id == 2


def test_first_spec_with_the_id_wins() -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC, bus="a"), DbcSpec(TRUCK_GNSS_DBC, bus="b")])
    samples = decoder.decode(Frame(0.0, 0x7, bytes(5)))
    assert samples
    assert {decoder.catalog[i].bus for i, _ in samples} == {"a"}


# ---------------------------------------------------------------- DBC errors


def test_garbage_dbc_raises_dbc_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.dbc"
    path.write_bytes(random.Random(3).randbytes(500))
    with pytest.raises(DbcError, match=r"garbage\.dbc") as info:
        Decoder([DbcSpec(path)])
    assert info.value.path == path
    assert info.value.reason
    assert isinstance(info.value.__cause__, UnsupportedDatabaseFormatError)


def test_missing_dbc_raises_dbc_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.dbc"
    with pytest.raises(DbcError, match=r"missing\.dbc") as info:
        Decoder([DbcSpec(path)])
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_cp1252_dbc_loads() -> None:
    decoder = Decoder([DbcSpec(CANTOOLS_DIR / "cp1252.dbc")])
    assert decoder.bound[0].dbc.sha256


def test_select_decodes_only_messages_carrying_selected_signals(
    drive_frames: list[Frame],
) -> None:
    frames = drive_frames[:20_000]
    full = Decoder([DbcSpec(DRIVE_DBC)])
    everything = [full.decode(f) for f in frames]
    wanted_index = next(i for per in everything for i, _ in per)
    wanted = frozenset({wanted_index})
    picky = Decoder([DbcSpec(DRIVE_DBC)])
    picky.select(wanted)
    for frame, all_samples in zip(frames, everything, strict=True):
        got = picky.decode(frame)
        if any(i in wanted for i, _ in all_samples):
            assert got == all_samples  # the whole message, exactly as before
        else:
            assert got == []
    stats = picky.stats
    assert stats.not_selected > 0
    assert stats.decoded + stats.skipped == stats.frames == len(frames)
    picky.select(None)
    assert [picky.decode(f) for f in frames] == everything


def test_select_skips_repeated_payloads_only_for_change_only_signals(
    drive_frames: list[Frame],
) -> None:
    frames = drive_frames[:20_000]
    full = Decoder([DbcSpec(DRIVE_DBC)])
    everything = [full.decode(f) for f in frames]
    all_indices = frozenset(i for per in everything for i, _ in per)
    repeats = Decoder([DbcSpec(DRIVE_DBC)])
    repeats.select(all_indices, skip_unchanged=all_indices)
    last: dict[tuple[int, bool], bytes] = {}
    expected_unchanged = 0
    for frame, all_samples in zip(frames, everything, strict=True):
        key = (frame.arbitration_id, frame.is_extended)
        repeated = bool(all_samples) and last.get(key) == frame.data
        if all_samples:
            last[key] = frame.data
        got = repeats.decode(frame)
        assert got == ([] if repeated else all_samples)
        expected_unchanged += repeated
    assert repeats.stats.unchanged == expected_unchanged > 0
