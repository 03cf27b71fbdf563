"""``telehub decode`` end to end: every format and layout read back and compared with
cantools frame by frame, filters, the time window, the JSON summary, and bad inputs
(exit codes and messages, never a traceback)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import can
import cantools
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from cantools.database.can import Database

from tests.tools.decode_reference import Reference, RefSource, reference, same_value
from tools.decode_cmd import main
from vehicle_agent.errors import LogFormatError

ROOT = Path(__file__).resolve().parents[2]
REJECTED_DBC = ROOT / "tests" / "data" / "cantools-dbc" / "issue_199.dbc"

DBC = """VERSION ""
BS_:
BU_: X
BO_ 256 Drive: 8 X
 SG_ Speed : 0|16@1+ (0.01,0) [0|655.35] "km/h" X
 SG_ Gear : 16|4@1+ (1,0) [0|15] "" X
 SG_ Torque : 24|16@1- (1,0) [0|0] "Nm" X
 SG_ Odometer : 40|24@1+ (1,0) [0|0] "km" X
BO_ 512 Muxed: 4 X
 SG_ Mux M : 0|8@1+ (1,0) [0|0] "" X
 SG_ Temp m0 : 8|8@1- (1,-40) [0|0] "degC" X
 SG_ Volt m1 : 8|16@1+ (0.001,0) [0|0] "V" X
BO_ 2164195329 Ext: 2 X
 SG_ Counter : 0|8@1+ (1,0) [0|0] "" X
VAL_ 256 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A BLF log of 3 s on channels 1 and 2, its DBC, and a copy of the DBC."""
    folder = tmp_path_factory.mktemp("decode")
    dbc = folder / "test.dbc"
    dbc.write_text(DBC)
    messages: list[can.Message] = []
    for i in range(300):
        t = 1_000.0 + i * 0.01
        channel = 1 + i % 2
        kind = i % 6
        if kind in (0, 1):
            data = bytes(
                [i % 256, (i * 7) % 256, i % 5, (i * 3) % 256, 0xFF - i % 256, i % 7, 1, 2]
            )
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    data=data,
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif kind == 2:
            data = bytes([(i // 6) % 3, i % 256, (i * 5) % 256, 0])  # mux 2: no branch
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x200,
                    data=data,
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif kind == 3:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x00FF0001,
                    is_extended_id=True,
                    data=bytes([i % 256, 0]),
                    channel=channel,
                )
            )
        elif kind == 4:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x7FF,
                    data=b"\x01",
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif i % 4 == 1:  # a short Drive frame: a decode error
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    data=b"\x01\x02",
                    channel=channel,
                    is_extended_id=False,
                )
            )
        else:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    is_remote_frame=True,
                    channel=channel,
                    is_extended_id=False,
                )
            )
    log = folder / "drive.blf"
    with can.Logger(str(log)) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    return {"log": log, "dbc": dbc, "folder": folder}


def _database(path: Path) -> Database:
    database = cantools.database.load_file(path, strict=False)
    assert isinstance(database, Database)
    return database


def _expected(files: dict[str, Path], *, choices: bool = False, scaling: bool = True) -> Reference:
    with can.LogReader(str(files["log"])) as reader:
        frames = [
            (
                m.arbitration_id,
                bytes(m.data),
                m.is_extended_id,
                m.is_remote_frame or m.is_error_frame,
                m.channel,
            )
            for m in reader
        ]
    return reference(frames, [RefSource(_database(files["dbc"]))], choices=choices, scaling=scaling)


def _log_rows(files: dict[str, Path]) -> list[tuple[float, object]]:
    with can.LogReader(str(files["log"])) as reader:
        return [(m.timestamp, m.channel) for m in reader]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _decode(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], out: Path, *extra: str
) -> dict[str, Any]:
    code, stdout, err = _run(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--json", *extra
    )
    assert code == 0, err
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def _wide_expected(
    files: dict[str, Path], message: str, *, choices: bool = False, scaling: bool = True
) -> list[dict[str, object]]:
    """Expected wide rows of one message: timestamp, channel, values (and labels)."""
    expected = _expected(files, choices=choices, scaling=scaling)
    log = _log_rows(files)
    rows: list[dict[str, object]] = []
    for position, (name, record) in sorted(expected.records.items()):
        if name != message:
            continue
        timestamp, channel = log[position]
        row: dict[str, object] = {"timestamp": timestamp, "channel": channel}
        for signal, (value, label) in record.items():
            row[signal] = value
            if choices and label is not None:
                row[f"{signal}.label"] = label
        rows.append(row)
    return rows


def _assert_rows(actual: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        present = {k: v for k, v in got.items() if v is not None}
        assert present.keys() == want.keys(), (got, want)
        for key, value in want.items():
            assert same_value(present[key], value), (key, present[key], value)


# --- formats and layouts ---------------------------------------------------------


def test_wide_parquet_directory_equals_cantools(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "decoded"
    summary = _decode(capsys, files, out)
    assert (summary["format"], summary["layout"]) == ("parquet", "wide")
    assert sorted(Path(p).name for p in summary["output"]) == [
        "Drive.parquet",
        "Ext.parquet",
        "Muxed.parquet",
    ]
    for message in ("Drive", "Muxed", "Ext"):
        table = pq.read_table(out / f"{message}.parquet")
        _assert_rows(table.to_pylist(), _wide_expected(files, message))
    schema = pq.read_schema(out / "Drive.parquet")
    assert schema.field("Speed").metadata == {b"unit": b"km/h"}
    assert str(schema.field("Gear").type) == "int64"
    assert not list(out.glob(".*partial"))


def test_wide_with_labels_and_raw_values(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "drive.parquet"
    _decode(capsys, files, out, "--message", "Drive", "--choices", "text", "--no-scaling")
    rows = pq.read_table(out).to_pylist()
    _assert_rows(rows, _wide_expected(files, "Drive", choices=True, scaling=False))
    assert {row["Gear.label"] for row in rows} >= {"P", "R", "N", "D"}


def test_long_parquet_is_in_log_order(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "all.parquet"
    summary = _decode(capsys, files, out, "--choices", "text")
    assert summary["layout"] == "long"
    rows = pq.read_table(out).to_pylist()
    expected = _expected(files, choices=True)
    log = _log_rows(files)
    want = [
        (log[p][0], log[p][1], name, signal, float(value), label)  # type: ignore[arg-type]
        for p, (name, record) in sorted(expected.records.items())
        for signal, (value, label) in record.items()
    ]
    got = [
        (r["timestamp"], r["channel"], r["message"], r["signal"], r["value"], r["label"])
        for r in rows
    ]
    assert got == want
    assert summary["samples"] == len(want)


def test_csv_wide_and_long(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "csv"
    _decode(capsys, files, folder, "--format", "csv")
    with (folder / "Muxed.csv").open() as file:
        rows = list(csv.DictReader(file))
    expected = _wide_expected(files, "Muxed")
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            assert float(got[key]) == value, (key, got, want)
        assert {k for k, v in got.items() if v != ""} == set(want)
    long = tmp_path / "long.csv"
    summary = _decode(capsys, files, long)
    with long.open() as file:
        lines = list(csv.DictReader(file))
    assert len(lines) == summary["samples"]
    assert list(lines[0]) == ["timestamp", "channel", "message", "signal", "value"]


def test_jsonl_wide_and_long(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    wide = tmp_path / "wide.jsonl"
    summary = _decode(capsys, files, wide, "--choices", "text")
    assert summary["layout"] == "wide"
    rows = [json.loads(line) for line in wide.read_text().splitlines()]
    assert [r["message"] for r in rows] == [
        name for _, (name, _) in sorted(_expected(files).records.items())
    ]
    drive = [
        {k: v for k, v in r.items() if k != "message"} for r in rows if r["message"] == "Drive"
    ]
    _assert_rows(drive, _wide_expected(files, "Drive", choices=True))
    long = tmp_path / "long.jsonl"
    summary = _decode(capsys, files, long, "--layout", "long", "--message", "Ext")
    lines = [json.loads(line) for line in long.read_text().splitlines()]
    assert len(lines) == summary["samples"] == summary["messages"]["Ext"]
    assert all(type(line["value"]) is int for line in lines)
    assert set(lines[0]) == {"timestamp", "channel", "message", "signal", "value"}


def test_cantools_engine_writes_the_same_tables(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    vector = _decode(capsys, files, tmp_path / "v", "--choices", "text")
    reference_run = _decode(
        capsys, files, tmp_path / "c", "--choices", "text", "--engine", "cantools"
    )
    assert vector["messages"] == reference_run["messages"]
    for message in ("Drive", "Muxed", "Ext"):
        a = pq.read_table(tmp_path / "v" / f"{message}.parquet")
        b = pq.read_table(tmp_path / "c" / f"{message}.parquet")
        assert a.equals(b)


# --- filters, window, summary ------------------------------------------------------


def test_summary_counts_every_frame(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    summary = _decode(capsys, files, tmp_path / "s", "--reader", "python-can")
    expected = _expected(files)
    assert summary["frames"] == 300
    assert summary["frames_decoded"] == len(expected.records)
    assert summary["decode_errors"] == expected.decode_errors == 25 + 16
    assert summary["skipped"] == expected.skipped == 25
    assert summary["unknown_ids"] == expected.unknown == 50
    assert (
        summary["frames"]
        == sum(
            summary[k]
            for k in ("frames_decoded", "decode_errors", "skipped", "unknown_ids", "not_selected")
        )
        + summary["outside_window"]
    )
    assert summary["reader"] == "python-can"
    assert summary["decode_errors_by_message"] == {"Drive": 25, "Muxed": 16}
    assert summary["frames_per_s"] > 0


def test_message_and_signal_filters(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "f"
    summary = _decode(capsys, files, out, "--signal", "Speed", "--signal", "Muxed.Volt")
    assert set(summary["messages"]) == {"Drive", "Muxed"}
    assert summary["not_selected"] == 50  # the Ext frames
    assert pq.read_schema(out / "Drive.parquet").names == ["timestamp", "channel", "Speed"]
    muxed = pq.read_table(out / "Muxed.parquet").to_pylist()
    expected = _wide_expected(files, "Muxed")
    assert [r["Volt"] for r in muxed] == [r.get("Volt") for r in expected]
    assert None in [r["Volt"] for r in muxed]  # frames of the other branch
    code, _, err = _run(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--message", "Drvie"
    )
    assert code == 2
    assert "no message 'Drvie'" in err
    assert "did you mean Drive" in err
    code, _, err = _run(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--signal", "Sped"
    )
    assert (code, "did you mean" in err, "Speed" in err) == (2, True, True)


def test_time_window(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "w.parquet"
    summary = _decode(capsys, files, out, "--message", "Drive", "--start", "1", "--end", "2")
    times = pq.read_table(out).column("timestamp").to_pylist()
    first = _log_rows(files)[0][0]
    assert times
    assert all(1.0 <= t - first < 2.0 for t in times)
    assert summary["outside_window"] == 200
    assert summary["frames"] == 300


def test_quiet_in_process_call_as_the_bench_makes_it(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = _run(
        capsys,
        str(files["log"]),
        "--dbc",
        str(files["dbc"]),
        "-o",
        str(tmp_path / "o.parquet"),
        "--quiet",
    )
    assert (code, out, err) == (0, "", "")
    assert (tmp_path / "o.parquet").is_file()


def test_channel_limited_dbc(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    everything = _decode(capsys, files, tmp_path / "a")
    code, stdout, err = _run(
        capsys, str(files["log"]), "--dbc", f"2={files['dbc']}", "-o", str(tmp_path / "b"), "--json"
    )
    assert code == 0, err
    second = json.loads(stdout)
    log = _log_rows(files)
    on_two = [p for p in _expected(files).records if log[p][1] == 2]
    assert second["frames_decoded"] == len(on_two)
    assert set(pq.read_table(tmp_path / "b" / "Drive.parquet").column("channel").to_pylist()) == {2}
    # One file per message, both channels, when the DBC is given for each.
    code, stdout, err = _run(
        capsys,
        str(files["log"]),
        "--dbc",
        f"1={files['dbc']}",
        "--dbc",
        f"2={files['dbc']}",
        "-o",
        str(tmp_path / "c"),
        "--json",
    )
    assert code == 0, err
    assert json.loads(stdout)["messages"] == everything["messages"]
    code, err = _error(capsys, str(files["log"]), "--dbc", f"={files['dbc']}", "-o", str(tmp_path))
    assert (code, "channel before '=' is empty" in err) == (2, True)


# --- bad inputs ------------------------------------------------------------------


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = _run(capsys, *args)
    assert out == ""
    return code, err


def test_bad_inputs(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    log, dbc = str(files["log"]), str(files["dbc"])
    out = str(tmp_path / "o.parquet")
    code, err = _error(capsys, str(tmp_path / "missing.blf"), "--dbc", dbc, "-o", out)
    assert (code, "missing.blf" in err, err.startswith("telehub: error:")) == (1, True, True)
    corrupt = tmp_path / "corrupt.blf"
    corrupt.write_bytes(b"LOGG" + bytes(range(200)))
    code, err = _error(capsys, str(corrupt), "--dbc", dbc, "-o", out)
    assert (code, "corrupt.blf" in err) == (1, True)
    code, err = _error(capsys, log, "--dbc", str(REJECTED_DBC), "-o", out)
    assert (code, "issue_199.dbc" in err, "cannot load DBC file" in err) == (1, True, True)
    code, err = _error(capsys, log, "--dbc", str(tmp_path / "nope.dbc"), "-o", out)
    assert (code, "nope.dbc" in err) == (1, True)
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "no" / "such" / "o.csv"))
    assert (code, "no directory" in err) == (1, True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(blocker / "sub"))
    assert (code, "cannot create output directory" in err) == (1, True)
    assert _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "x.txt"))[0] == 2
    code, err = _error(capsys, log, "--dbc", dbc, "-o", str(tmp_path / "w.csv"), "--layout", "wide")
    assert (code, "holds one message" in err) == (2, True)
    assert _error(capsys, log, "--dbc", dbc, "-o", out, "--start", "2", "--end", "1")[0] == 2
    assert _error(capsys, log, "--dbc", dbc, "-o", out, "--chunk", "0")[0] == 2
    assert _error(capsys, log, "--dbc", dbc, "-o", log, "--format", "csv")[0] == 2
    assert _error(capsys, log, "-o", out)[0] == 2  # --dbc is required
    code, err = _error(capsys, str(files["dbc"]), "--dbc", dbc, "-o", out, "--reader", "fast")
    assert (code, "fast reader" in err) == (1, True)
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_failure_midway_leaves_no_output(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vehicle_agent.logs import read_columns as real

    def failing(path: Path, **kwargs: Any) -> Any:
        chunks = real(path, **kwargs)
        yield next(chunks)
        raise LogFormatError(path, "frame 7", "broken")

    monkeypatch.setattr("tools.decode_cmd.read_columns", failing)
    out = tmp_path / "out"
    code, err = _error(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--chunk", "50"
    )
    assert (code, "frame 7: broken" in err) == (1, True)
    assert list(out.iterdir()) == []


def test_nan_and_infinity_are_null_in_json() -> None:
    """JSON has no NaN or infinity; every other number keeps its exact repr."""
    from tools.decode.sinks import _json_number

    values = (float("nan"), float("inf"), 1.5, 2, -0.0, 0.1 + 0.2, 2**64 + 1)
    assert [_json_number(v) for v in values] == [
        "null",
        "null",
        "1.5",
        "2",
        "-0.0",
        "0.30000000000000004",
        "18446744073709551617",
    ]
