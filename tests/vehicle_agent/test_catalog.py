"""Catalog tests: deterministic indices and id, signal metadata, DBC loading."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from vehicle_agent.catalog import (
    Catalog,
    DbcInfo,
    DbcSpec,
    is_j1939_database,
    j1939_pgn,
    load_dbc,
    read_dbc,
)
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import DbcError

ROOT = Path(__file__).resolve().parents[2]
CANTOOLS_DIR = ROOT / "tests" / "data" / "cantools-dbc"
DRIVE_DBC = ROOT / "tools" / "demo_data" / "drive-gnss" / "canmod-gps.dbc"
J1939_DBC = ROOT / "tools" / "demo_data" / "truck-j1939" / "CSS-Electronics-SAE-J1939-DEMO.dbc"
TRUCK_GNSS_DBC = ROOT / "tools" / "demo_data" / "truck-j1939" / "canmod-gps.dbc"
SPECS = [DbcSpec(J1939_DBC, bus="j1939", channel="1"), DbcSpec(DRIVE_DBC, bus="gnss")]


def test_catalog_id_is_deterministic() -> None:
    first = Decoder(SPECS).catalog
    second = Decoder(list(SPECS)).catalog
    assert first.catalog_id == second.catalog_id
    assert first.signals == second.signals
    assert 0 < first.catalog_id < 2**64


def test_catalog_id_is_the_same_in_another_process() -> None:
    # Another interpreter has another hash seed: the id must not depend on it.
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from vehicle_agent.catalog import DbcSpec\nfrom vehicle_agent.decoding import Decoder\n"
        "specs = [DbcSpec(Path(sys.argv[1]), bus='j1939', channel='1'),"
        " DbcSpec(Path(sys.argv[2]), bus='gnss')]\n"
        "print(Decoder(specs).catalog.catalog_id)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(J1939_DBC), str(DRIVE_DBC)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert int(result.stdout) == Decoder(SPECS).catalog.catalog_id


def test_catalog_id_changes_with_the_dbcs(tmp_path: Path) -> None:
    base = Decoder(SPECS).catalog.catalog_id
    assert Decoder([SPECS[0]]).catalog.catalog_id != base
    assert Decoder(list(reversed(SPECS))).catalog.catalog_id != base
    renamed = [SPECS[0], DbcSpec(DRIVE_DBC, bus="other")]
    assert Decoder(renamed).catalog.catalog_id != base
    # One changed unit in an otherwise identical file.
    text = DRIVE_DBC.read_text(encoding="utf-8")
    assert '[0|1048.575] "m/s"' in text
    edited = tmp_path / DRIVE_DBC.name
    edited.write_text(text.replace('[0|1048.575] "m/s"', '[0|1048.575] "km/h"'))
    assert Decoder([SPECS[0], DbcSpec(edited, bus="gnss")]).catalog.catalog_id != base


def test_scaling_change_shows_in_the_fingerprint_only(tmp_path: Path) -> None:
    # Values travel scaled, so the indices keep their meaning; the DBC digest
    # still tells the cloud the file changed.
    text = DRIVE_DBC.read_text(encoding="utf-8")
    edited = tmp_path / DRIVE_DBC.name
    edited.write_text(text.replace("(0.001,0) [0|1048.575]", "(0.002,0) [0|1048.575]"))
    original = Decoder([DbcSpec(DRIVE_DBC)]).catalog
    changed = Decoder([DbcSpec(edited)]).catalog
    assert changed.catalog_id == original.catalog_id
    assert changed.dbcs[0].sha256 != original.dbcs[0].sha256


def test_index_order_and_lookup() -> None:
    catalog = Decoder(SPECS).catalog
    assert len(catalog) == 2 + 39
    assert [s.index for s in catalog] == list(range(len(catalog)))
    assert [(s.message, s.name) for s in catalog.signals[:2]] == [
        ("EEC1", "EngineSpeed"),
        ("CCVS1", "WheelBasedVehicleSpeed"),
    ]
    assert catalog.signals[2].bus == "gnss"
    assert catalog.signals[2].message == "gnss_pos"  # first message of the file
    speed = catalog.index_of("gnss", "gnss_speed", "Speed")
    assert catalog[speed].name == "Speed"
    assert catalog[speed].frame_id == 7
    assert not catalog[speed].is_extended
    with pytest.raises(KeyError):
        catalog.index_of("j1939", "gnss_speed", "Speed")


def test_same_signal_twice_keeps_the_first() -> None:
    # Two channels carrying the same module on one logical bus: one set of signals.
    same_bus = Decoder(
        [DbcSpec(DRIVE_DBC, bus="gnss", channel="1"), DbcSpec(TRUCK_GNSS_DBC, bus="gnss")]
    )
    single = Decoder([DbcSpec(DRIVE_DBC, bus="gnss")])
    assert same_bus.catalog.signals == single.catalog.signals
    assert len(same_bus.catalog.dbcs) == 1  # same file name, bytes and bus
    two_buses = Decoder([DbcSpec(DRIVE_DBC, bus="a"), DbcSpec(DRIVE_DBC, bus="b")])
    assert len(two_buses.catalog) == 2 * len(single.catalog)
    assert two_buses.bound[0].dbc is two_buses.bound[1].dbc  # loaded once


def test_signal_metadata() -> None:
    catalog = Decoder(SPECS).catalog
    speed = catalog[catalog.index_of("gnss", "gnss_speed", "Speed")]
    assert speed.unit == "m/s"
    assert speed.minimum == 0.0
    assert speed.maximum == 1048.575
    assert not speed.is_float
    assert speed.pgn == 0
    valid = catalog[catalog.index_of("gnss", "gnss_speed", "SpeedValid")]
    assert dict(valid.choices) == {0: "Invalid", 1: "Valid"}
    assert speed.choices == ()


def test_j1939_pgn_filled() -> None:
    catalog = Decoder(SPECS).catalog
    engine = catalog[catalog.index_of("j1939", "EEC1", "EngineSpeed")]
    assert engine.frame_id == 0x0CF004FE
    assert engine.is_extended
    assert engine.pgn == 0xF004
    assert catalog[catalog.index_of("j1939", "CCVS1", "WheelBasedVehicleSpeed")].pgn == 0xFEF1
    forced_off = Decoder([DbcSpec(J1939_DBC, j1939=False)]).catalog
    assert forced_off[0].pgn == 0


def test_j1939_pgn_function() -> None:
    assert j1939_pgn(0x0CF004FE) == 0xF004  # PDU2
    assert j1939_pgn(0x18EA21FE) == 0xEA00  # PDU1: destination dropped
    assert j1939_pgn(0x19EA21FE) == 0x1EA00  # data page kept
    assert j1939_pgn(0x1BFEF100) == 0x3FEF1  # extended data page kept


def test_choices_with_negative_values_and_cp1252_labels() -> None:
    catalog = Decoder([DbcSpec(CANTOOLS_DIR / "choices.dbc")]).catalog
    foo = catalog[catalog.index_of("can", "Foo", "Foo")]
    choices = dict(foo.choices)
    assert choices[-5] == "A negative value"
    assert choices[0] == "With space"
    assert choices[1] == "#%=*\u00e4'"  # cp1252 0xE4
    assert [value for value, _ in foo.choices] == sorted(choices)


def test_dbc_info_fingerprint() -> None:
    catalog = Decoder(SPECS).catalog
    assert catalog.dbcs == (
        DbcInfo(J1939_DBC.name, hashlib.sha256(J1939_DBC.read_bytes()).digest(), "j1939"),
        DbcInfo(DRIVE_DBC.name, hashlib.sha256(DRIVE_DBC.read_bytes()).digest(), "gnss"),
    )


def test_j1939_detection() -> None:
    assert is_j1939_database(load_dbc(J1939_DBC))  # ProtocolType "J1939"
    assert is_j1939_database(load_dbc(CANTOOLS_DIR / "vframeformat_int.dbc"))  # VFrameFormat 3
    assert not is_j1939_database(load_dbc(DRIVE_DBC))
    assert not is_j1939_database(load_dbc(CANTOOLS_DIR / "motohawk.dbc"))


def test_utf8_and_cp1252_text() -> None:
    eec1 = load_dbc(J1939_DBC).get_message_by_name("EEC1")
    assert eec1.signals[0].comment is not None
    assert eec1.signals[0].comment.endswith("cylinders.\u2026")  # UTF-8 ellipsis
    node = load_dbc(CANTOOLS_DIR / "cp1252.dbc").nodes[0]
    assert node.comment is not None
    assert "\u20ac" in node.comment  # cp1252 0x80, the euro sign


def test_strict_is_opt_in() -> None:
    path = CANTOOLS_DIR / "issue_63.dbc"  # overlapping signals
    assert load_dbc(path).messages
    with pytest.raises(DbcError, match=r"issue_63\.dbc.*overlapping"):
        load_dbc(path, strict=True)
    with pytest.raises(DbcError, match=r"issue_63\.dbc"):
        Decoder([DbcSpec(path)], strict=True)


def test_read_dbc_digest_matches_file() -> None:
    loaded = read_dbc(DRIVE_DBC)
    assert loaded.sha256 == hashlib.sha256(DRIVE_DBC.read_bytes()).digest()
    assert loaded.path == DRIVE_DBC


def test_catalog_rejects_misnumbered_signals() -> None:
    catalog = Decoder(SPECS).catalog
    with pytest.raises(ValueError, match="index"):
        Catalog(catalog.signals[1:], catalog.dbcs)
