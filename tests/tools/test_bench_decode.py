"""``telehub bench decode`` and the MF4 writer it relies on.

A short run must print the promised JSON (each path's peak memory included), and
every way of decoding must have decoded the same number of frames from the same
frames. The fast MF4 writer
must write files python-can reads back frame for frame (timestamps bit for bit)
and asammdf decodes. No test asserts a rate: timings on shared machines are noise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import can
import pytest
from asammdf import MDF

from tests.tools.bench_recordings import mixed_recording
from tools.bench.decoders import load_dbc
from tools.bench.memory import PeakWatch
from tools.bench.workload import (
    Recording,
    WorkloadError,
    load_recording,
    replay_passes,
    write_log,
    write_mf4,
)
from tools.cli import main
from tools.demo import demo_data
from vehicle_agent.logs.columns import BRS, ESI, EXTENDED, FD, RX

DRIVE = demo_data() / "drive-gnss" / "drive_545s.MF4"
#: Whether this system lets a process reset and read its peak memory (Linux 4.0+).
PEAK_KNOWN = PeakWatch().peak() is not None
DBC = demo_data() / "drive-gnss" / "canmod-gps.dbc"


def test_bench_decode_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--frames", "3000", "--repeats", "1", "--cli-frames", "500", "--json"]
    code = main(["bench", "decode", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["repeats"] == 1
    assert summary["formats"] == ["mf4", "blf", "candump"]
    assert summary["decoded_agree"] is True
    expected_paths = {
        "mf4": {"telehub", "naive", "asammdf"},
        "blf": {"telehub", "naive"},
        "candump": {"telehub", "naive", "cantools_cli"},
    }
    for fmt, paths in expected_paths.items():
        entry = summary[fmt]
        assert entry["frames"] == 3000
        for path in paths:
            assert entry[path] > 0, (fmt, path)
            assert entry["frames_per_wall_s"][path] > 0, (fmt, path)
        for path in {"naive", "cantools_cli", "asammdf"} - paths:
            assert path not in entry
        assert entry["telehub_vs_naive"] > 0
        (run,) = entry["runs"]
        decoded = entry["frames_decoded"]
        # The cross-check itself: the same frames decoded by every path.
        full = {path for path in paths if path != "cantools_cli"}
        assert {run[path]["frames"] for path in full} == {3000}
        assert {decoded[path] for path in full} == {run["naive"]["frames_decoded"]}
        assert 0 < decoded["naive"] < 3000  # the drive has frames the DBC does not define
        peaks = entry["peak_rss_bytes"]
        assert set(peaks) == paths
        for path in paths:
            assert peaks[path] == run[path]["peak_rss_bytes"]  # the largest of one repeat
            if PEAK_KNOWN:
                assert 32 * 2**20 < peaks[path] < 64 * 2**30, (fmt, path)  # a Python process
                if path != "cantools_cli":  # in-process: at least where the path started
                    assert 0 < run[path]["start_rss_bytes"] <= peaks[path], (fmt, path)
            else:
                assert peaks[path] is None
    cli = summary["candump"]
    assert cli["cantools_cli_frames"] == 500
    assert cli["runs"][0]["cantools_cli"]["frames"] == 500
    assert (
        0 < cli["frames_decoded"]["cantools_cli"] == cli["frames_decoded"]["cantools_cli_reference"]
    )
    assert cli["telehub_vs_cantools_cli"] > 0
    assert summary["mf4"]["telehub_vs_asammdf"] > 0
    assert "the first 500 frames only" in err  # says the CLI decoded fewer frames


def test_bench_decode_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "decode", "--frames", "2000", "--repeats", "1", "--formats", "blf"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "frames per CPU-second" in out
    assert "peak RSS, MiB" in out
    assert "naive loop" in out
    assert "(agree)" in out


def _expected(recording: Recording, frames: int) -> list[can.Message]:
    cols = recording.frames
    out = []
    for count, shift in replay_passes(recording, frames):
        for i in range(count):
            flags = int(cols.flags[i])
            out.append(
                can.Message(
                    timestamp=float(cols.timestamp[i]) + shift,
                    arbitration_id=int(cols.arbitration_id[i]),
                    is_extended_id=bool(flags & EXTENDED),
                    is_rx=bool(flags & RX),
                    is_fd=bool(flags & FD),
                    bitrate_switch=bool(flags & BRS),
                    error_state_indicator=bool(flags & ESI),
                    data=bytes(cols.data[i, : cols.length[i]]),
                    channel=can.util.channel2int(cols.channels[cols.channel[i]]),
                )
            )
    return out


def _same(read: list[can.Message], expected: list[can.Message]) -> None:
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        assert got.timestamp == want.timestamp  # bit for bit, not within a tolerance
        assert (got.arbitration_id, got.is_extended_id) == (
            want.arbitration_id,
            want.is_extended_id,
        )
        assert bytes(got.data) == bytes(want.data)
        assert (got.dlc, got.is_fd, got.bitrate_switch, got.error_state_indicator) == (
            want.dlc,
            want.is_fd,
            want.bitrate_switch,
            want.error_state_indicator,
        )
        assert (got.is_rx, got.channel) == (want.is_rx, want.channel)


def test_write_mf4_round_trip(tmp_path: Path) -> None:
    recording = load_recording(DRIVE, 700)
    path = tmp_path / "replayed.mf4"
    # 2,000 frames of a 700-frame recording: three passes, time shifted twice.
    assert write_mf4(recording, path, 2000) == 2000
    with can.LogReader(str(path)) as reader:
        read = list(reader)
    expected = _expected(recording, 2000)
    _same(read, expected)
    assert read[700].timestamp > read[699].timestamp  # time keeps moving forward
    # asammdf decodes the same frames cantools decodes.
    db = load_dbc(DBC)
    decodable = 0
    for m in expected:
        try:
            db.decode_message(m.arbitration_id, bytes(m.data), force_extended_id=m.is_extended_id)
        except KeyError:
            continue
        decodable += 1
    mdf = MDF(path)
    try:
        extracted = mdf.extract_bus_logging({"CAN": [(str(DBC), 0)]})
        try:
            assert sum(g.channel_group.cycles_nr for g in extracted.groups) == decodable > 0
        finally:
            extracted.close()
    finally:
        mdf.close()


def test_write_mf4_fd_extended_and_sent_frames(tmp_path: Path) -> None:
    recording = mixed_recording()
    path = tmp_path / "fd.mf4"
    write_mf4(recording, path, 9)
    with can.LogReader(str(path)) as reader:
        _same(list(reader), _expected(recording, 9))


def test_write_log_formats_hold_the_same_frames(tmp_path: Path) -> None:
    recording = load_recording(DRIVE, 300)
    frames = {}
    for suffix in ("mf4", "blf", "log", "asc"):
        path = tmp_path / f"x.{suffix}"
        assert write_log(recording, suffix, path, 500) == 500
        with can.LogReader(str(path)) as reader:
            frames[suffix] = [(m.arbitration_id, bytes(m.data), m.is_extended_id) for m in reader]
    assert frames["mf4"] == frames["blf"] == frames["log"] == frames["asc"]


def test_write_mf4_rejects_wide_bus_channels(tmp_path: Path) -> None:
    recording = load_recording(DRIVE, 10)
    frames = dataclasses.replace(recording.frames, channels=[4] * len(recording.frames.channels))
    wide = dataclasses.replace(recording, frames=frames)
    with pytest.raises(WorkloadError, match="channel"):
        write_mf4(wide, tmp_path / "x.mf4", 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log", "drive.blf"], "--dbc"),
        (["--dbc", "x.dbc"], "--log"),
        (["--log", "missing.blf", "--dbc", str(DBC)], "no such file"),
        (["--formats", "mf4,pcap"], "'pcap'"),
        (["--repeats", "0"], "--repeats"),
        (["--frames", "0"], "--frames"),
        (["--cli-frames", "-1"], "--cli-frames"),
        (["--big-log", "1M", "--formats", "asc"], "no fast writer for asc"),
        (["--big-log", "lots"], "takes a size such as 1.2G"),
        (["--big-log", "0"], "at least one byte"),
    ],
)
def test_bench_decode_bad_input(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "decode", *args]) == 1
    assert message in capsys.readouterr().err


def test_bench_decode_bad_dbc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dbc = tmp_path / "broken.dbc"
    dbc.write_text("BO_ garbage\n")
    assert main(["bench", "decode", "--log", str(DRIVE), "--dbc", str(dbc)]) == 1
    assert "cannot read the DBC file" in capsys.readouterr().err
