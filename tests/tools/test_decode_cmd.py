"""``telehub decode`` end to end: every format and layout read back and compared with
cantools frame by frame, filters, the time window and the JSON summary (bad inputs:
``test_decode_cmd_errors.py``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import can
import cantools
import pyarrow.parquet as pq
import pytest
from cantools.database.can import Database

from tests.tools.decode_cli_data import run_main, write_files
from tests.tools.decode_reference import Reference, RefSource, reference, same_value


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("decode"))


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


def _decode(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], out: Path, *extra: str
) -> dict[str, Any]:
    code, stdout, err = run_main(
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
    # Columns every decoded frame fills are declared without nulls; channels
    # (None in some logs) and multiplexed signals may have them.
    nullable = {f.name: f.nullable for f in pq.read_schema(out / "Muxed.parquet")}
    assert nullable == {
        "timestamp": False,
        "channel": True,
        "Mux": False,
        "Temp": True,
        "Volt": True,
    }
    assert not any(schema.field(name).nullable for name in ("timestamp", "Speed", "Gear"))


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
    nullable = {f.name: f.nullable for f in pq.read_schema(out)}
    assert nullable == {
        "timestamp": False,
        "channel": True,
        "message": False,
        "signal": False,
        "value": False,
        "label": True,
    }


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
    code, _, err = run_main(
        capsys, str(files["log"]), "--dbc", str(files["dbc"]), "-o", str(out), "--message", "Drvie"
    )
    assert code == 2
    assert "no message 'Drvie'" in err
    assert "did you mean Drive" in err
    code, _, err = run_main(
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
    code, out, err = run_main(
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
    code, stdout, err = run_main(
        capsys, str(files["log"]), "--dbc", f"2={files['dbc']}", "-o", str(tmp_path / "b"), "--json"
    )
    assert code == 0, err
    second = json.loads(stdout)
    log = _log_rows(files)
    on_two = [p for p in _expected(files).records if log[p][1] == 2]
    assert second["frames_decoded"] == len(on_two)
    assert set(pq.read_table(tmp_path / "b" / "Drive.parquet").column("channel").to_pylist()) == {2}
    # One file per message, both channels, when the DBC is given for each.
    code, stdout, err = run_main(
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
    code, _, err = run_main(
        capsys, str(files["log"]), "--dbc", f"={files['dbc']}", "-o", str(tmp_path)
    )
    assert (code, "channel before '=' is empty" in err) == (2, True)


def test_text_channels_and_small_row_groups(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    """A candump log names its channels: the channel column is text. Chunks of 7
    frames still give one row group per file (rows are gathered before writing)."""
    log = tmp_path / "bus.log"
    with can.LogReader(str(files["log"])) as reader, can.Logger(str(log)) as writer:
        for msg in reader:
            if not msg.is_error_frame:
                msg.channel = f"vcan{msg.channel}"
                writer.on_message_received(msg)
    out = tmp_path / "out"
    code, _, err = run_main(
        capsys, str(log), "--dbc", str(files["dbc"]), "-o", str(out), "--chunk", "7"
    )
    assert code == 0, err
    drive = pq.ParquetFile(out / "Drive.parquet")
    assert drive.metadata.num_row_groups == 1
    assert set(drive.read().column("channel").to_pylist()) == {"vcan1", "vcan2"}
    code, _, err = run_main(
        capsys, str(log), "--dbc", str(files["dbc"]), "-o", str(tmp_path / "l.csv")
    )
    assert code == 0, err
    with (tmp_path / "l.csv").open() as file:
        assert {row["channel"] for row in csv.DictReader(file)} == {"vcan1", "vcan2"}


def test_a_signal_named_like_a_fixed_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dbc = tmp_path / "clash.dbc"
    dbc.write_text(
        'VERSION ""\nBS_:\nBU_: X\nBO_ 1 M: 2 X\n'
        ' SG_ channel : 0|8@1+ (1,0) [0|0] "" X\n SG_ timestamp : 8|8@1+ (1,0) [0|0] "" X\n'
    )
    log = tmp_path / "clash.log"
    log.write_text("(1.0) can0 001#0507\n")
    code, _, err = run_main(capsys, str(log), "--dbc", str(dbc), "-o", str(tmp_path / "o.parquet"))
    assert code == 0, err
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == [
        {"timestamp": 1.0, "channel": "can0", "signal.channel": 5, "signal.timestamp": 7}
    ]
    code, _, err = run_main(capsys, str(log), "--dbc", str(dbc), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0, err
    assert json.loads((tmp_path / "o.jsonl").read_text()) == {
        "timestamp": 1.0,
        "channel": "can0",
        "signal.channel": 5,
        "signal.timestamp": 7,
    }
