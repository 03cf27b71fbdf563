"""``telehub bench decode --big-log SIZE``: a log of SIZE per format, decoded in a child process.

Run here on logs of a few hundred kilobytes: the figures must be there and
plausible, the temporary files gone, and a run that would not fit on the disk
refused before anything is written. No test asserts a rate or a flat peak:
timings and memory on shared machines are noise at these sizes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from tools.bench.biglog import bench_big_log, parse_size
from tools.bench.decoders import BenchError
from tools.bench.memory import PeakWatch
from tools.cli import main
from tools.demo import demo_data

DRIVE = demo_data() / "drive-gnss" / "drive_545s.MF4"
DBC = demo_data() / "drive-gnss" / "canmod-gps.dbc"
PEAK_KNOWN = PeakWatch().peak() is not None


@pytest.fixture
def temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary directory, for this test only."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_big_log_json(temporary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "decode", "--big-log", "300k", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["benchmark"] == "decode-big-log"
    assert summary["size_bytes"] == 300_000
    assert summary["formats"] == ["mf4", "blf", "candump"]
    for fmt in summary["formats"]:
        entry = summary[fmt]
        assert 0.9 * 300_000 < entry["file_bytes"] < 1.1 * 300_000, fmt
        reference = entry["reference"]
        assert 0.05 * 300_000 < reference["file_bytes"] < 0.15 * 300_000, fmt
        for run in (entry, reference):
            assert 0 < run["frames_decoded"] < run["frames"], fmt  # not every id is in the DBC
            assert run["frames_per_cpu_s"] > 0
            assert run["cpu_seconds"] > 0
            assert run["output_bytes"] > 0
            assert run["reader"] == "fast reader, vector engine"
            if PEAK_KNOWN:
                assert 32 * 2**20 < run["peak_rss_bytes"] < 16 * 2**30, fmt
        if PEAK_KNOWN:
            growth = entry["peak_rss_bytes"] - reference["peak_rss_bytes"]
            assert entry["peak_rss_growth_bytes"] == growth
    assert summary["blf"]["zlib_level"] == 1
    assert "in a child process" in err  # progress, then each log's figures
    assert list(temporary.iterdir()) == []  # the logs and tables are gone


def test_big_log_table(temporary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "decode", "--big-log", "100k", "--formats", "candump"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "telehub bench decode --big-log 100.00 kB" in out
    assert "peak MiB" in out
    assert "candump" in out
    assert list(temporary.iterdir()) == []


def test_big_log_refused_without_room(capsys: pytest.CaptureFixture[str]) -> None:
    # No disk has three times 100 PB free: refused before the recording is read.
    assert main(["bench", "decode", "--big-log", "100000T"]) == 1
    err = capsys.readouterr().err
    assert "needs 3 times that free" in err
    assert "bench: reading" not in err


def test_big_log_refused_when_space_is_short(temporary: Path) -> None:
    asked: list[Path] = []

    def free_space(folder: Path) -> int:
        asked.append(folder)
        return 2_999_999

    console = Console(stderr=True, quiet=True)
    with pytest.raises(BenchError, match=r"needs 3 times that free .* and 3\.00 MB are free"):
        bench_big_log(DRIVE, DBC, ("candump",), 1000, 1_000_000, console, free_space=free_space)
    assert asked == [temporary]
    assert list(temporary.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1.2G", 1_200_000_000),
        ("1.2GB", 1_200_000_000),
        ("300m", 300_000_000),
        ("2GiB", 2 * 2**30),
        ("1.5 kB", 1500),
        (".5T", 500_000_000_000),
        ("5000", 5000),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1.2X", "5i", "-1G", "1,2G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(BenchError, match="takes a size"):
        parse_size(text)
