"""Frame source tests: every python-can log format read without loss, broken files,
real-time pacing, and live buses on python-can's in-process virtual interface."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest

from vehicle_agent.errors import SourceError
from vehicle_agent.frames import Frame
from vehicle_agent.logs import ReaderChoice
from vehicle_agent.sources import BusSource, FrameSource, LogSource, to_frame

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "data" / "python-can-logs"
LOGS = sorted(p for p in LOG_DIR.iterdir() if not p.name.startswith("LICENSE"))


def _expected(msg: can.Message, channel: str | None = None) -> Frame:
    """The frame a source must yield for *msg*; *channel* when the bus sets its own."""
    if channel is None and msg.channel is not None:
        channel = str(msg.channel)
    return Frame(
        timestamp=msg.timestamp,
        arbitration_id=msg.arbitration_id,
        data=bytes(msg.data),
        is_extended=msg.is_extended_id,
        is_fd=msg.is_fd,
        is_remote=msg.is_remote_frame,
        is_error=msg.is_error_frame,
        channel=channel,
        bitrate_switch=msg.bitrate_switch,
        error_state_indicator=msg.error_state_indicator,
    )


def _read(path: Path, *, realtime: bool = False, speed: float = 1.0) -> list[Frame]:
    with LogSource(path, realtime=realtime, speed=speed) as source:
        return list(source)


# ---------------------------------------------------------------- log files


@pytest.mark.parametrize("reader", ["auto", "python-can"])
@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_log_source_reads_like_python_can(path: Path, reader: ReaderChoice) -> None:
    with can.LogReader(path) as log:
        expected = [_expected(msg) for msg in log]
    with LogSource(path, reader=reader, chunk_frames=50) as source:
        frames = list(source)
        by_channel = source.frames_by_channel
    assert frames == expected
    assert frames
    assert all(isinstance(frame.data, bytes) for frame in frames)
    counted: dict[str, int] = {}
    for frame in frames:
        counted[frame.channel or "log"] = counted.get(frame.channel or "log", 0) + 1
    assert by_channel == counted


def test_log_formats_cover_flags() -> None:
    # The corpus above must include the frame kinds the decoder treats specially.
    frames = [frame for path in LOGS for frame in _read(path)]
    assert len(frames) > 1500
    assert any(frame.is_error for frame in frames)
    assert any(frame.is_remote for frame in frames)
    assert any(frame.is_fd for frame in frames)
    assert any(frame.bitrate_switch for frame in frames)
    assert any(frame.error_state_indicator for frame in frames)
    assert any(frame.is_extended for frame in frames)
    assert {".asc", ".blf", ".trc", ".gz"} <= {p.suffix for p in LOGS}


def test_demo_recordings(drive_frames: list[Frame], truck_frames: list[Frame]) -> None:
    assert len(drive_frames) == 65_296
    assert len(truck_frames) == 57_849
    assert {frame.channel for frame in truck_frames} == {"1", "2"}
    # Absolute hardware timestamps, in order.
    assert drive_frames[0].timestamp > 1.5e9
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(drive_frames))


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "frames.xyz"
    path.write_text("hello")
    with pytest.raises(SourceError, match=r"frames\.xyz.*unknown log format"):
        LogSource(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nothing\.asc") as info:
        LogSource(tmp_path / "nothing.asc")
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize("suffix", [".blf", ".mf4", ".asc", ".trc", ".asc.gz"])
def test_random_bytes(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(random.Random(suffix).randbytes(4000))
    # Binary formats fail on their header when opened, text formats on reading.
    with pytest.raises(SourceError, match=re.escape(path.name)):
        _read(path)


def test_truncated_blf_raises_after_the_good_frames(tmp_path: Path) -> None:
    original = LOG_DIR / "test_CanMessage.blf"
    path = tmp_path / "cut.blf"
    path.write_bytes(original.read_bytes()[:300])
    good = _read(original)
    seen: list[Frame] = []
    with LogSource(path) as source, pytest.raises(SourceError, match=r"cut\.blf"):
        seen.extend(source)
    assert seen == good[: len(seen)]


def test_truncated_asc_yields_frames_before_the_cut(tmp_path: Path) -> None:
    # python-can reads a text log line by line and stops quietly at the end:
    # a cut file gives the frames before the cut (the cut line itself may come
    # out partial) and no error.
    original = LOG_DIR / "issue_1256.asc"
    text = original.read_text(encoding="utf-8")
    path = tmp_path / "cut.asc"
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    full = _read(original)
    cut = _read(path)
    assert 100 < len(cut) < len(full)
    assert cut[:-1] == full[: len(cut) - 1]


def test_close_is_idempotent() -> None:
    source = LogSource(LOG_DIR / "logfile.asc")
    assert [source.closed] == [False]  # a list: keeps mypy from narrowing the property
    assert len(list(source)) == 20
    source.close()
    source.close()
    assert source.closed
    with pytest.raises(SourceError, match="closed"):
        iter(source).__next__()


def test_frames_are_read_lazily(demo_dir: Path) -> None:
    with LogSource(demo_dir / "drive-gnss" / "drive_545s.MF4") as source:
        iterator = iter(source)
        first = next(iterator)
        assert first.channel in {"1", "2"}
    # Closing mid-way is fine.


def test_bad_speed() -> None:
    with pytest.raises(ValueError, match="speed"):
        LogSource(LOG_DIR / "logfile.asc", realtime=True, speed=0)


def _write_asc(path: Path, count: int, gap: float) -> None:
    with can.ASCWriter(path) as writer:
        for i in range(count):
            writer.on_message_received(
                can.Message(timestamp=100.0 + i * gap, arbitration_id=0x100 + i, data=bytes([i]))
            )


def test_realtime_paces_frames(tmp_path: Path) -> None:
    path = tmp_path / "paced.asc"
    _write_asc(path, count=4, gap=0.1)
    unpaced = _read(path)
    assert len(unpaced) == 4

    started = time.perf_counter()
    assert _read(path, realtime=True) == unpaced
    assert time.perf_counter() - started >= 0.25  # 0.3 s recorded

    started = time.perf_counter()
    assert _read(path, realtime=True, speed=3.0) == unpaced
    assert time.perf_counter() - started >= 0.09  # 0.3 s recorded, 3x faster


def test_to_frame_normalises_channel() -> None:
    msg = can.Message(timestamp=5.5, arbitration_id=0x1ABCDEF0, data=bytearray(b"\x01\x02"))
    msg.channel = 3
    frame = to_frame(msg)
    assert frame == Frame(5.5, 0x1ABCDEF0, b"\x01\x02", is_extended=True, channel="3")
    assert type(frame.data) is bytes
    msg.channel = None
    assert to_frame(msg).channel is None


# ---------------------------------------------------------------- live buses


@pytest.fixture
def channel() -> str:
    # A channel of its own per test: virtual buses with the same name share frames.
    return f"telehub-test-{uuid.uuid4().hex}"


@pytest.fixture
def sender(channel: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    yield bus
    bus.shutdown()


@pytest.fixture
def open_source() -> Iterator[Callable[..., BusSource]]:
    """Open BusSources; fail the test if one is left open."""
    opened: list[BusSource] = []

    def open_(interface: str, channel: str, **kwargs: Any) -> BusSource:
        source = BusSource(interface, channel, **kwargs)
        opened.append(source)
        return source

    yield open_
    leaked = [source for source in opened if not source.closed]
    for source in leaked:
        source.close()
    assert not leaked, f"{len(leaked)} BusSource(s) left open"


SENT = [
    can.Message(timestamp=10.0, arbitration_id=0x123, data=b"\x01\x02", is_extended_id=False),
    can.Message(timestamp=10.5, arbitration_id=0x18F00400, data=bytes(8)),
    can.Message(
        timestamp=11.0, arbitration_id=0x7FF, is_remote_frame=True, dlc=4, is_extended_id=False
    ),
    can.Message(
        timestamp=11.5,
        arbitration_id=0x100,
        data=bytes(range(64)),
        is_fd=True,
        bitrate_switch=True,
        error_state_indicator=True,
        is_extended_id=False,
    ),
    can.Message(timestamp=12.0, arbitration_id=0x0, is_error_frame=True, is_extended_id=False),
]


def test_bus_source_receives_equal_frames(
    channel: str, sender: can.BusABC, open_source: Callable[..., BusSource]
) -> None:
    with open_source("virtual", channel, bitrate=500_000, fd=True) as source:
        for msg in SENT:
            sender.send(msg)
        received = [source.recv(timeout=1.0) for _ in SENT]
        assert received == [_expected(msg, channel) for msg in SENT]
        assert source.recv(timeout=0.01) is None
    assert source.closed


def test_bus_source_iterates_until_closed(
    channel: str, sender: can.BusABC, open_source: Callable[..., BusSource]
) -> None:
    source = open_source("virtual", channel, poll_interval=0.02)
    for msg in SENT[:2]:
        sender.send(msg)
    closer = threading.Timer(0.3, source.close)
    closer.start()
    try:
        frames = list(source)  # ends when the timer closes the source
    finally:
        closer.join()
    assert frames == [_expected(msg, channel) for msg in SENT[:2]]


def test_bus_source_close_twice_and_recv_after_close(
    channel: str, open_source: Callable[..., BusSource]
) -> None:
    source = open_source("virtual", channel)
    source.close()
    source.close()
    with pytest.raises(SourceError, match="closed"):
        source.recv(timeout=0.0)
    assert list(source) == []


def test_bus_source_bad_interface() -> None:
    with pytest.raises(SourceError, match="no-such-interface"):
        BusSource("no-such-interface", "can0")


def test_sources_satisfy_the_protocol(channel: str, open_source: Callable[..., BusSource]) -> None:
    sources: list[FrameSource] = [
        LogSource(LOG_DIR / "single_frame.asc"),
        open_source("virtual", channel),
    ]
    for source in sources:
        with source:
            pass
    assert all(getattr(source, "closed", False) for source in sources)
