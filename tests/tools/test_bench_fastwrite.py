"""The fast candump and BLF writers write python-can's writers' files, byte for byte."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import can
import numpy as np
import pytest

from tests.tools.bench_recordings import mixed_recording
from tools.bench.fastwrite import write_blf, write_candump
from tools.bench.workload import Recording, WorkloadError, load_recording, write_log
from tools.demo import demo_data
from vehicle_agent.logs.columns import ERROR

DRIVE = demo_data() / "drive-gnss" / "drive_545s.MF4"


@pytest.fixture(scope="module")
def drive() -> Recording:
    return load_recording(DRIVE, 700)


@pytest.mark.parametrize(("suffix", "write"), [("log", write_candump), ("blf", write_blf)])
@pytest.mark.parametrize("frames", [1, 700, 2000])  # one frame, one pass, three passes
def test_drive_as_python_can_writes_it(
    tmp_path: Path, drive: Recording, suffix: str, write: object, frames: int
) -> None:
    assert callable(write)
    ours, theirs = tmp_path / f"fast.{suffix}", tmp_path / f"python-can.{suffix}"
    assert write(drive, ours, frames) == frames
    write_log(drive, suffix, theirs, frames)
    assert ours.read_bytes() == theirs.read_bytes()


def test_mixed_frames_as_python_can_writes_them(tmp_path: Path) -> None:
    recording = mixed_recording()  # CAN FD, extended, sent, four channels, relative time
    write_candump(recording, tmp_path / "fast.log", 9)
    write_log(recording, "log", tmp_path / "python-can.log", 9)
    assert (tmp_path / "fast.log").read_bytes() == (tmp_path / "python-can.log").read_bytes()
    write_blf(recording, tmp_path / "fast.blf", 9)
    write_log(recording, "blf", tmp_path / "python-can.blf", 9)
    assert (tmp_path / "fast.blf").read_bytes() == (tmp_path / "python-can.blf").read_bytes()


@pytest.mark.parametrize("level", [0, 1, 9])
def test_blf_compression_levels(tmp_path: Path, drive: Recording, level: int) -> None:
    write_blf(drive, tmp_path / "fast.blf", len(drive), compression_level=level)
    with can.BLFWriter(tmp_path / "python-can.blf", compression_level=level) as writer:
        for msg in drive.frames.messages():
            writer.on_message_received(msg)
    assert (tmp_path / "fast.blf").read_bytes() == (tmp_path / "python-can.blf").read_bytes()


def test_candump_times_formatted_as_python_does(tmp_path: Path, drive: Recording) -> None:
    stamps = [
        -2.25,  # negative
        -3.0,  # before the first frame: python-can writes the first frame's time
        0.0,
        0.0000005,  # ties and near-ties of the sixth decimal
        0.0000015,
        0.0000025,
        0.9999995,
        0.99999951,  # rounds up into the next second
        1578929939.1234565,
        1578929939.9999996,
        2.0**53 + 2,
        float("inf"),
        float("nan"),
    ]
    n = len(stamps)
    frames = dataclasses.replace(
        drive.frames,
        timestamp=np.array(stamps),
        arbitration_id=drive.frames.arbitration_id[:n],
        flags=drive.frames.flags[:n],
        dlc=drive.frames.dlc[:n],
        length=drive.frames.length[:n],
        data=drive.frames.data[:n],
        channel=drive.frames.channel[:n],
    )
    recording = Recording(frames, skipped=0)
    write_candump(recording, tmp_path / "fast.log", n)
    with can.CanutilsLogWriter(tmp_path / "python-can.log") as writer:
        for msg in frames.messages():
            writer.on_message_received(msg)
    ours = (tmp_path / "fast.log").read_text().splitlines()
    assert ours == (tmp_path / "python-can.log").read_text().splitlines()
    assert ours[1].startswith("(-2.250000) ")
    assert ours[7].startswith("(1.000000) ")


def test_progress_and_bad_input(tmp_path: Path, drive: Recording) -> None:
    for write in (write_candump, write_blf):
        seen: list[int] = []
        write(drive, tmp_path / "x", 150_000, seen.append)
        assert seen == sorted(seen)
        assert seen[-1] == 150_000
        with pytest.raises(WorkloadError, match="at least 1"):
            write(drive, tmp_path / "x", 0)
        flags = drive.frames.flags.copy()
        flags[3] |= ERROR
        broken = Recording(dataclasses.replace(drive.frames, flags=flags), skipped=0)
        with pytest.raises(WorkloadError, match="error frames"):
            write(broken, tmp_path / "x", 10)
        with pytest.raises(WorkloadError, match="cannot write"):
            write(drive, tmp_path / "missing" / "x", 10)
