"""``telehub replay``: a log through the real agent to a real loopback gateway, or onto a bus.

The gateway runs on the test's event loop (the fixtures of ``tests/conftest.py``)
while the command runs in a worker thread with its own loop, as it would in its
own process. Bus replays go to python-can's virtual bus, where a second bus on
the same channel receives what was sent. Timing is only checked loosely: a
paced replay cannot finish before its log's duration divided by the speed,
and a fast one must finish well within the log's own duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import can
import pytest

from cloud.auth import issue_token
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from tests.conftest import E2E_SECRET, E2E_TENANT
from tools.bench.loopback import LoopbackCloud
from tools.demo import demo_data
from tools.replay_cmd import main
from vehicle_agent.logs import read_columns

DRIVE = demo_data() / "drive-gnss"
DRIVE_LOG = DRIVE / "drive_545s.MF4"
GPS_DBC = DRIVE / "canmod-gps.dbc"
CAN_LOGS = Path(__file__).parent.parent / "data" / "python-can-logs"
#: 1,457 classic frames over 7.94 s on one channel.
PACED_LOG = CAN_LOGS / "issue_1256.asc"
PACED_LOG_SECONDS = 7.94
SLICE_START = 200.0
SLICE_SECONDS = 2.0
#: 20 frames: 4 error frames, remote frames, CAN FD frames, five channels.
MIXED_LOG = CAN_LOGS / "logfile.asc"


def enroll(registry: TenantRegistry, vehicle_id: str) -> str:
    registry.store(E2E_TENANT).enroll_vehicle(vehicle_id)
    return issue_token(E2E_TENANT, vehicle_id, E2E_SECRET)


async def replay(*argv: str) -> int:
    # main() runs its own event loop: off this one, which serves the gateway.
    return await asyncio.to_thread(main, list(argv))


def log_messages(path: Path) -> list[can.Message]:
    with can.LogReader(str(path)) as reader:
        return list(reader)


def fields(msg: can.Message) -> tuple[Any, ...]:
    return (
        msg.arbitration_id,
        msg.is_extended_id,
        msg.is_remote_frame,
        msg.is_fd,
        msg.bitrate_switch,
        msg.dlc,
        bytes(msg.data),
    )


@pytest.fixture(scope="module")
def drive_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds from the middle of the drive (GNSS and IMU frames), as a BLF file."""
    return write_slice(tmp_path_factory.mktemp("replay") / "drive_slice.blf", SLICE_SECONDS)


def write_slice(path: Path, seconds: float) -> Path:
    # The agent's fast MF4 reader: python-can's would take seconds for the drive.
    (chunk,) = read_columns(DRIVE_LOG, chunk_frames=100_000)
    messages = chunk.messages()
    first = messages[0].timestamp
    with can.BLFWriter(str(path)) as writer:
        for msg in messages:
            if SLICE_START <= msg.timestamp - first < SLICE_START + seconds:
                writer.on_message_received(msg)
    return path


@pytest.fixture
def channel() -> str:
    return f"telehub-replay-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def receiver(channel: str) -> Iterator[can.BusABC]:
    # Opened before the replay: a virtual bus only gets what is sent after it exists.
    bus = can.Bus(interface="virtual", channel=channel)
    yield bus
    bus.shutdown()


def received(bus: can.BusABC) -> list[can.Message]:
    out: list[can.Message] = []
    while (msg := bus.recv(timeout=0)) is not None:
        out.append(msg)
    return out


# ---------------------------------------------------------------- to a gateway


@pytest.mark.slow
async def test_drive_at_max_speed_is_stored_as_sent(
    gateway: GatewayServer,
    registry: TenantRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = enroll(registry, "REPLAY-0001")
    outbox = tmp_path / "outbox.sqlite"
    argv = ["--dbc", f"{GPS_DBC}:gnss", "--to", gateway.target, "--vehicle", "REPLAY-0001"]
    argv += ["--token", token, "--max-speed", "--outbox", str(outbox), "--json"]
    code = await replay(str(DRIVE_LOG), *argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["mode"] == "gateway"
    assert summary["interrupted"] is False
    assert summary["frames_read"] == 65_296  # the whole recording
    assert summary["frames_decoded"] == 57_604  # its published reference
    assert summary["samples_sent"] > 100_000
    assert summary["samples_acked"] == summary["samples_sent"]
    stored = registry.store(E2E_TENANT).count_samples("REPLAY-0001")
    assert stored == summary["samples_sent"]
    assert outbox.exists()
    assert "REPLAY-0001" in err

    # Again with the same outbox: the agent resumes after the frames it sent.
    code = await replay(str(DRIVE_LOG), *argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    again = json.loads(out)
    assert again["frames_resumed"] == 65_296
    assert again["frames_read"] == again["samples_sent"] == 0
    assert registry.store(E2E_TENANT).count_samples("REPLAY-0001") == stored


async def test_a_slice_at_ten_times_real_time_is_stored_as_sent(
    gateway: GatewayServer,
    registry: TenantRegistry,
    drive_slice: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = enroll(registry, "REPLAY-0002")
    argv = ["--dbc", f"{GPS_DBC}:gnss", "--to", gateway.target, "--vehicle", "REPLAY-0002"]
    argv += ["--token", token, "--speed", "10", "--no-outbox", "--json"]
    started = time.monotonic()
    code = await replay(str(drive_slice), *argv)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["speed"] == 10
    assert summary["outbox"] is None
    assert summary["frames_read"] == len(log_messages(drive_slice))
    assert summary["frames_decoded"] > 100
    assert summary["samples_sent"] > 500
    assert summary["samples_acked"] == summary["samples_sent"]
    assert registry.store(E2E_TENANT).count_samples("REPLAY-0002") == summary["samples_sent"]
    # Frames are never read early: 2 s of log at 10x take at least 0.2 s.
    assert elapsed >= SLICE_SECONDS / 10


async def test_the_summary_is_readable(
    gateway: GatewayServer,
    registry: TenantRegistry,
    drive_slice: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = enroll(registry, "REPLAY-0003")
    argv = ["--dbc", f"{GPS_DBC}:gnss", "--to", gateway.target, "--vehicle", "REPLAY-0003"]
    assert (
        await replay(str(drive_slice), *argv, "--token", token, "--max-speed", "--no-outbox") == 0
    )
    out = capsys.readouterr().out
    stored = registry.store(E2E_TENANT).count_samples("REPLAY-0003")
    assert f"REPLAY-0003 via {gateway.target}" in out
    assert f"samples acknowledged    {stored:,}" in out
    assert "none (memory only)" in out
    assert "frames/s" in out


async def test_unreachable_gateway_fails_after_the_connect_timeout(
    drive_slice: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dbc", str(GPS_DBC), "--to", "127.0.0.1:1", "--vehicle", "V", "--token", "t"]
    argv += ["--max-speed", "--no-outbox", "--connect-timeout", "0.5"]
    assert await replay(str(drive_slice), *argv) == 1
    err = capsys.readouterr().err
    assert "telehub: error: gateway 127.0.0.1:1 did not accept the vehicle within 0.5 s" in err
    assert "UNAVAILABLE" in err  # the uplink's last error says why


async def test_a_vehicle_the_gateway_does_not_know_is_refused(
    gateway: GatewayServer, drive_slice: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issue_token(E2E_TENANT, "NOT-ENROLLED", E2E_SECRET)
    argv = ["--dbc", str(GPS_DBC), "--to", gateway.target, "--vehicle", "NOT-ENROLLED"]
    argv += ["--token", token, "--max-speed", "--no-outbox"]
    assert await replay(str(drive_slice), *argv) == 1
    err = capsys.readouterr().err
    assert "telehub: error: gateway" in err
    assert "refused vehicle 'NOT-ENROLLED'" in err


@pytest.mark.parametrize(
    ("log", "dbc", "message"),
    [
        (CAN_LOGS / "missing.asc", GPS_DBC, "No such file"),
        (PACED_LOG, CAN_LOGS.parent / "cantools-dbc" / "issue_199.dbc", "more than 11 bits"),
        (PACED_LOG, CAN_LOGS.parent / "cantools-dbc" / "missing.dbc", "cannot load DBC file"),
    ],
)
def test_bad_files_are_errors(
    log: Path, dbc: Path, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(log), "--dbc", str(dbc), "--to", "127.0.0.1:1", "--vehicle", "V"]
    assert main([*argv, "--token", "t", "--no-outbox"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("telehub: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "127.0.0.1:1", "--token", "t", "--dbc", str(GPS_DBC)], "--to needs --vehicle"),
        (["--to", "127.0.0.1:1", "--vehicle", "V", "--token", "t"], "at least one --dbc"),
        (["--bus", "virtual:x", "--vehicle", "V"], "--vehicle goes with --to"),
        (["--bus", "virtual:x", "--no-outbox"], "--no-outbox goes with --to"),
        (["--bus", "virtual"], "not INTERFACE:CHANNEL"),
        (["--bus", "virtual:x:fast"], "bit rate 'fast' is not a number"),
        (["--bus", "virtual:x", "--speed", "0"], "not a positive number"),
        (["--bus", "virtual:x", "--speed", "2", "--max-speed"], "not allowed with"),
        ([], "one of the arguments --to --bus is required"),
    ],
)
def test_usage_errors_exit_2(
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TELEHUB_TOKEN", raising=False)
    assert main([str(PACED_LOG), *extra]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- onto a bus


def test_bus_receives_exactly_the_logs_frames(
    channel: str, receiver: can.BusABC, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(PACED_LOG), "--bus", f"virtual:{channel}", "--max-speed", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    expected = log_messages(PACED_LOG)
    got = received(receiver)
    assert [fields(m) for m in got] == [fields(m) for m in expected]
    assert summary["frames_read"] == summary["frames_sent"] == len(expected) == 1457
    assert summary["send_errors"] == summary["error_frames_skipped"] == 0
    assert summary["elapsed_seconds"] < PACED_LOG_SECONDS


def test_bus_gets_remote_and_fd_frames_but_no_error_frames(
    channel: str, receiver: can.BusABC, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(MIXED_LOG), "--bus", f"virtual:{channel}", "--max-speed", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    expected = [m for m in log_messages(MIXED_LOG) if not m.is_error_frame]
    got = received(receiver)
    assert [fields(m) for m in got] == [fields(m) for m in expected]
    assert any(m.is_remote_frame for m in got)
    assert any(m.is_fd for m in got)
    assert (summary["frames_read"], summary["frames_sent"]) == (20, 16)
    assert summary["error_frames_skipped"] == 4


def test_bus_replay_is_paced_by_the_speed(
    channel: str, receiver: can.BusABC, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main([str(PACED_LOG), "--bus", f"virtual:{channel}", "--speed", "20"]) == 0
    elapsed = time.monotonic() - started
    # Frames are never sent early; the upper bound only needs to be far below
    # real time (7.94 s), whatever the machine's load.
    assert PACED_LOG_SECONDS / 20 <= elapsed < PACED_LOG_SECONDS / 2
    assert len(received(receiver)) == 1457
    out = capsys.readouterr().out
    assert "frames sent" in out
    assert "1,457" in out


def test_bus_that_cannot_open_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(PACED_LOG), "--bus", "no-such-interface:x"]) == 1
    err = capsys.readouterr().err
    assert "telehub: error: cannot open CAN bus no-such-interface:x" in err


def test_missing_log_fails_before_the_bus_opens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(CAN_LOGS / "missing.asc"), "--bus", "virtual:x"]) == 1
    assert "No such file" in capsys.readouterr().err


# ---------------------------------------------------------------- Ctrl-C


@contextmanager
def interrupt_when(ready: Callable[[], bool]) -> Iterator[None]:
    """Send this process SIGINT once *ready()* holds, as Ctrl-C would, while the body runs.

    The tests using it replay logs that last far longer than *ready* takes to
    hold, so the signal lands while the command runs, never after.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if ready():
                if not done.is_set():
                    os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def test_ctrl_c_stops_a_bus_replay_with_a_summary(
    channel: str, receiver: can.BusABC, capsys: pytest.CaptureFixture[str]
) -> None:
    got: list[can.Message] = []

    def some_frames_arrived() -> bool:
        got.extend(received(receiver))
        return len(got) >= 10

    with interrupt_when(some_frames_arrived):
        code = main([str(PACED_LOG), "--bus", f"virtual:{channel}", "--json"])  # real time
    assert code == 130
    summary = json.loads(capsys.readouterr().out)
    assert summary["interrupted"] is True
    got.extend(received(receiver))
    assert 10 <= summary["frames_sent"] == len(got) < 1457


def test_ctrl_c_stops_reading_and_delivers_what_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Here the command runs on the main thread, where Ctrl-C arrives; the
    # gateway runs in a child process.
    log = write_slice(tmp_path / "long_slice.blf", 60.0)
    (tmp_path / "cloud").mkdir()
    with LoopbackCloud(tmp_path / "cloud") as cloud:
        token = cloud.enroll("REPLAY-0004")
        argv = [str(log), "--dbc", f"{GPS_DBC}:gnss", "--to", cloud.target, "--speed", "4"]
        argv += ["--vehicle", "REPLAY-0004", "--token", token, "--no-outbox", "--json"]
        # The first batch is stored after ~2 s; the whole replay would take 15 s.
        with interrupt_when(lambda: cloud.count_samples("REPLAY-0004") > 0):
            code = main(argv)
        stored = cloud.count_samples("REPLAY-0004")
    out, err = capsys.readouterr()
    assert code == 130, err
    assert "stopping" in err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert 0 < summary["frames_read"] < len(log_messages(log))
    assert summary["samples_sent"] > 0
    assert summary["samples_acked"] == summary["samples_sent"] == stored
