"""``telehub dbc``: real DBC files of cantools' test suite, shown as tables or JSON.

Each test checks content read from the file (names, ids, PGNs, counts), and the
three loading outcomes: clean, rejected only by cantools' strict checks (a
warning, exit 0; an error with ``--strict``), and rejected outright (exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.dbc_cmd import inspect_dbc, main

DBC = Path(__file__).parent.parent / "data" / "cantools-dbc"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data, err


def signal(data: dict[str, Any], message: str, name: str) -> dict[str, Any]:
    m = next(m for m in data["messages"] if m["name"] == message)
    found: dict[str, Any] = next(s for s in m["signals"] if s["name"] == name)
    return found


def test_motohawk_table_shows_messages_and_signals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DBC / "motohawk.dbc")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "1 messages, 3 signals" in out
    assert "strict checks: pass" in out
    for text in ("ExampleMessage", "0x1F0", "PCM1", "Enable", "AverageRadius", "Temperature"):
        assert text in out
    assert "0=Disabled, 1=Enabled" in out  # choices, sorted by value
    assert "degK" in out
    assert "PCM1, FOO" in out  # receivers of Temperature
    assert "[229.52, 270.47]" in out
    assert "0.01, 250" in out  # scale, offset
    assert "BE" in out


def test_motohawk_json_carries_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "motohawk.dbc"))
    assert data["file"].endswith("motohawk.dbc")
    assert data["j1939"] is False
    assert data["strict_ok"] is True
    assert data["warnings"] == []
    assert [n["name"] for n in data["nodes"]] == ["PCM1", "FOO"]
    (m,) = data["messages"]
    assert (m["name"], m["frame_id"], m["id_hex"]) == ("ExampleMessage", 0x1F0, "0x1F0")
    assert (m["is_extended"], m["length"], m["is_fd"]) == (False, 8, False)
    assert m["senders"] == ["PCM1"]
    assert m["comment"] == "Example message used as template in MotoHawk models."
    assert m["j1939"] is None
    assert [s["name"] for s in m["signals"]] == ["Enable", "AverageRadius", "Temperature"]
    t = signal(data, "ExampleMessage", "Temperature")
    assert (t["start"], t["length"], t["byte_order"]) == (0, 12, "big_endian")
    assert (t["is_signed"], t["is_float"]) == (True, False)
    assert (t["scale"], t["offset"], t["minimum"], t["maximum"]) == (0.01, 250, 229.52, 270.47)
    assert (t["unit"], t["receivers"]) == ("degK", ["PCM1", "FOO"])
    assert signal(data, "ExampleMessage", "Enable")["choices"] == {"0": "Disabled", "1": "Enabled"}


def test_multiplexed_signals_name_their_multiplexer_and_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, _ = run_json(capsys, str(DBC / "multiplex.dbc"))
    (m,) = data["messages"]
    assert m["is_multiplexed"] is True
    assert len(m["signals"]) == data["signal_count"] == 12
    mux = signal(data, "Message1", "Multiplexor")
    assert mux["is_multiplexer"] is True
    assert mux["comment"] == "Defines data content for response messages."
    bit_j = signal(data, "Message1", "BIT_J")
    assert (bit_j["multiplexer_signal"], bit_j["multiplexer_ids"]) == ("Multiplexor", [8, 16, 24])
    assert signal(data, "Message1", "BIT_A")["multiplexer_ids"] == [24]

    assert main([str(DBC / "multiplex.dbc")]) == 0
    out = capsys.readouterr().out
    assert "multiplexer" in out
    assert "Multiplexor=8,16,24" in out
    assert "Multiplexor=24" in out


def test_j1939_messages_show_pgn_priority_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "j1939.dbc"))
    assert data["j1939"] is True
    assert sorted(n["name"] for n in data["nodes"]) == ["Node1", "Node2"]
    by_name = {m["name"]: m for m in data["messages"]}
    assert by_name["Message1"]["id_hex"] == "0x15340201"
    # PDU1 (format 0x34 < 240): the destination byte 0x02 is not part of the PGN.
    assert by_name["Message1"]["j1939"] == {
        "pgn": 0x13400,
        "priority": 5,
        "source": 0x01,
        "destination": 0x02,
    }
    # PDU2 (format 0xF0): the whole PDU-specific byte belongs to the PGN.
    assert by_name["Message2"]["j1939"] == {
        "pgn": 0x1F010,
        "priority": 5,
        "source": 0x02,
        "destination": None,
    }
    assert by_name["Message1"]["senders"] == ["Node1"]
    assert signal(data, "Message1", "Signal1")["spn"] == 500
    assert signal(data, "Message1", "Signal1")["receivers"] == ["Node2"]

    assert main([str(DBC / "j1939.dbc")]) == 0
    out = capsys.readouterr().out
    assert "PGN" in out
    assert "78848 (0x13400)" in out
    assert "126992 (0x1F010)" in out


def test_can_fd_and_extended_flags(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "fd_test.dbc"))
    flags = {m["name"]: (m["is_extended"], m["is_fd"]) for m in data["messages"]}
    assert flags == {
        "TestMsg_Ex": (True, False),
        "TestMsg_Std": (False, False),
        "TestMsg_FDStd": (False, True),
        "TestMsg_FDEx": (True, True),
    }
    assert data["j1939"] is False


def test_choices_keep_negative_values_and_odd_labels(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "choices.dbc"))
    choices = signal(data, "Foo", "Foo")["choices"]
    assert list(choices) == ["-5", "0", "1", "2", "3", "4", "5", "6"]
    assert choices["-5"] == "A negative value"
    assert choices["0"] == "With space"
    assert choices["1"] == "#%=*ä'"


def test_cycle_times(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "foobar.dbc"))
    cycles = {m["name"]: m["cycle_time_ms"] for m in data["messages"]}
    assert cycles["Foo"] == 100
    assert cycles["Fum"] == 1


def test_one_message_by_name_or_id(capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = run_json(capsys, str(DBC / "abs.dbc"), "--message", "BREMSE_33")
    assert [m["name"] for m in data["messages"]] == ["BREMSE_33"]
    assert data["message_count"] == 18  # the file's count, not the selection's
    frame_id = data["messages"][0]["id_hex"]
    data, _ = run_json(capsys, str(DBC / "abs.dbc"), "--message", frame_id)
    assert [m["name"] for m in data["messages"]] == ["BREMSE_33"]


def test_unknown_message_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DBC / "abs.dbc"), "--message", "BREMSE_3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("telehub: error: ")
    assert "no message 'BREMSE_3'" in err
    assert "BREMSE_33" in err


def test_strict_only_rejection_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    data, err = run_json(capsys, str(DBC / "issue_63.dbc"))
    reason = "The signals HtrRes and MaxRes are overlapping in message AFT1PSI2."
    assert err == f"telehub: warning: strict check: {reason}\n"
    assert data["strict_ok"] is False
    assert data["warnings"] == [f"strict check: {reason}"]
    # Loaded non-strictly, as the agent does: every signal is there.
    assert [s["name"] for s in data["messages"][0]["signals"]] == [
        "DetectionStatus",
        "PwrSupply",
        "RegenFailedCount",
        "Temp",
        "MaxRes",
        "HtrRes",
    ]

    assert main([str(DBC / "issue_63.dbc")]) == 0
    captured = capsys.readouterr()
    assert "strict checks: FAIL" in captured.out
    assert reason in captured.err


def test_strict_flag_makes_the_strict_checks_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DBC / "bad_message_length.dbc"), "--strict"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "bad_message_length.dbc" in err
    assert "The signal Signal1 does not fit in message Message1." in err
    # A file that passes is unaffected by --strict.
    assert main([str(DBC / "motohawk.dbc"), "--strict"]) == 0


def test_every_message_at_fault_is_listed(tmp_path: Path) -> None:
    # cantools stops at the first failing message; the report checks each one.
    path = tmp_path / "two_bad.dbc"
    path.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        "BO_ 1 Short: 1 Vector__XXX\n"
        ' SG_ PastTheEnd : 8|1@1+ (1,0) [0|1] "" Vector__XXX\n\n'
        "BO_ 2 Overlap: 8 Vector__XXX\n"
        ' SG_ A : 0|8@1+ (1,0) [0|255] "" Vector__XXX\n'
        ' SG_ B : 4|8@1+ (1,0) [0|255] "" Vector__XXX\n\n'
        "BO_ 3 Fine: 8 Vector__XXX\n"
        ' SG_ C : 0|8@1+ (1,0) [0|255] "" Vector__XXX\n'
    )
    report = inspect_dbc(path)
    assert [m.name for m in report.database.messages] == ["Short", "Overlap", "Fine"]
    assert report.strict_problems == (
        "The signal PastTheEnd does not fit in message Short.",
        "The signals B and A are overlapping in message Overlap.",
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("issue_199.dbc", "Standard frame id 0x10630000 is more than 11 bits"),
        ("incorrect-val.dbc", "unused VAL_ entries"),
        ("incorrect-sig_valtype.dbc", "unused SIG_VALTYPE_ entries"),
    ],
)
def test_files_cantools_rejects_name_the_file_and_reason(
    name: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(DBC / name), "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("telehub: error: cannot load DBC file")
    assert name in err
    assert reason in err


def test_missing_file_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DBC / "no-such.dbc")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert main([]) == 2
    assert "DBC" in capsys.readouterr().err
