"""The telehub command line, called as ``main(argv)``: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.cli import main

DATA = Path(__file__).parent.parent / "data"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("telehub ")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--data-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames_read"] == 65_296 + 57_849
    assert summary["frames_decoded"] == 57_604 + 13_991 + 12_278
    assert summary["samples_sent"] > 100_000
    assert summary["samples_stored"] == summary["samples_sent"]
    assert summary["latest"]["EngineSpeed"]["unit"] == "rpm"
    assert 646.5 <= summary["latest"]["EngineSpeed"]["value"] <= 653.75
    assert summary["latest"]["FixType"]["label"]  # choices travel as numbers, shown as text
    assert (tmp_path / "demo-motors.db").exists()
    # The truck's fault codes reached the dealer CRM: one lead, the other codes joined it.
    crm = summary["crm"]
    assert crm["events"]["fault_set"] >= 1
    assert crm["event_outcomes"]["opened"] == 1
    assert [(lead["vehicle_id"], lead["kind"], lead["state"]) for lead in crm["leads"]] == [
        ("DEMO-TRUCK-0001", "fault_set", "open")
    ]


@pytest.mark.slow
def test_demo_prints_a_readable_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "samples stored" in out
    assert "all stored" in out
    assert "EngineSpeed" in out
    assert "rpm" in out
    assert "1 service lead(s)" in out


def test_agent_run_without_a_source_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEHUB_LOG_FILE", raising=False)
    monkeypatch.delenv("TELEHUB_INTERFACE", raising=False)
    dbc = DATA / "cantools-dbc" / "motohawk.dbc"
    code = main(["agent", "run", "--vehicle", "V1", "--token", "t", "--dbc", str(dbc)])
    assert code == 1
    assert "exactly one source" in capsys.readouterr().err


def test_agent_run_with_an_invalid_dbc_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.dbc"
    bad.write_text("BO_ this is not a DBC file\n")
    log = DATA / "python-can-logs" / "logfile.asc"
    code = main(
        ["agent", "run", "--vehicle", "V1", "--token", "t", "--dbc", str(bad), "--log", str(log)]
    )
    assert code == 1
    assert "broken.dbc" in capsys.readouterr().err
