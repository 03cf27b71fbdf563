"""The fast text readers (candump, ASC, TRC) yield exactly python-can's frames.

Each reader is compared field by field (timestamps with ``==``, the channel's
type included) with python-can's reader on the bundled logs and on logs that
python-can's own writers produce here, plain and gzipped, read in chunks of 7
so that every chunk boundary gets crossed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import can
import numpy as np
import pytest

from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import candump, read_columns
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.logs.generic import read_messages

ROOT = Path(__file__).resolve().parents[3]
LOG_DIR = ROOT / "tests" / "data" / "python-can-logs"
CHUNK = 7

Fields = tuple[object, ...]


def fields(msg: can.Message) -> Fields:
    """Every field of a message, the channel's type too."""
    return (
        msg.timestamp,
        msg.arbitration_id,
        msg.is_extended_id,
        msg.is_remote_frame,
        msg.is_error_frame,
        msg.channel,
        type(msg.channel),
        msg.dlc,
        bytes(msg.data),
        msg.is_fd,
        msg.is_rx,
        msg.bitrate_switch,
        msg.error_state_indicator,
    )


def python_can(path: Path) -> list[Fields]:
    return [fields(msg) for msg in read_messages(path)]


def check_chunks(chunks: list[FrameColumns], chunk_frames: int) -> None:
    """Chunks are full but the last, numbered in order, zero padded, channels all used."""
    position = 0
    for number, chunk in enumerate(chunks):
        assert chunk.first_position == position
        assert 0 < len(chunk) <= chunk_frames
        if number < len(chunks) - 1:
            assert len(chunk) == chunk_frames
        position += len(chunk)
        width = chunk.data.shape[1]
        assert not (chunk.data[np.arange(width) >= chunk.length[:, None]]).any()
        assert sorted(set(chunk.channel.tolist())) == list(range(len(chunk.channels)))


def fast(reader: ModuleType, path: Path, chunk_frames: int = CHUNK) -> list[Fields]:
    chunks = list(reader.read(path, chunk_frames))
    check_chunks(chunks, chunk_frames)
    return [fields(msg) for chunk in chunks for msg in chunk.messages()]


def _collect(frames: Iterator[Fields], into: list[Fields]) -> None:
    into.extend(frames)


def fast_until_error(reader: ModuleType, path: Path) -> tuple[list[Fields], LogFormatError]:
    """The frames a reader yields before it raises, and what it raises."""
    chunks: Iterator[FrameColumns] = reader.read(path, CHUNK)
    got: list[Fields] = []
    with pytest.raises(LogFormatError) as raised:
        _collect((fields(msg) for chunk in chunks for msg in chunk.messages()), got)
    return got, raised.value


def python_can_until_error(path: Path) -> list[Fields]:
    got: list[Fields] = []
    with pytest.raises(LogFormatError):
        _collect((fields(msg) for msg in read_messages(path)), got)
    return got


def sample_messages(
    count: int = 120, *, fd: bool = True, special: bool = True
) -> list[can.Message]:
    """Realistic traffic: standard and extended ids, channels, FD, remote and error frames."""
    rng = random.Random(4)
    out = []
    t = 1_627_274_455.0125
    for n in range(count):
        t += rng.choice((0.0, 0.000125, 0.0104, 0.25, 1.5))
        kind = n % 10 if special else n % 3
        channel = (0, 1, 2)[n % 3]
        size = rng.randrange(9)
        extended = n % 4 == 1
        ident = rng.randrange(1 << 29) if extended else rng.randrange(1 << 11)
        msg = can.Message(
            timestamp=t,
            arbitration_id=ident,
            is_extended_id=extended,
            channel=channel,
            data=rng.randbytes(size),
            is_rx=n % 5 != 2,
        )
        if kind == 7:
            msg = can.Message(
                timestamp=t,
                arbitration_id=ident,
                is_extended_id=extended,
                is_remote_frame=True,
                dlc=rng.randrange(9),
                channel=channel,
            )
        elif kind == 8:
            msg = can.Message(timestamp=t, is_error_frame=True, channel=channel)
        elif kind == 9 and fd:
            size = rng.choice((0, 5, 8, 12, 16, 20, 24, 32, 48, 64))
            msg = can.Message(
                timestamp=t,
                arbitration_id=ident,
                is_extended_id=extended,
                channel=channel,
                data=rng.randbytes(size),
                is_fd=True,
                bitrate_switch=n % 20 == 9,
                error_state_indicator=n % 30 == 9,
            )
        out.append(msg)
    return out


def write_log(path: Path, messages: list[can.Message]) -> Path:
    with can.Logger(str(path)) as logger:
        for msg in messages:
            logger.on_message_received(msg)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# --- candump -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["frames.log", "frames.log.gz"])
def test_candump_written_by_python_can(tmp_path: Path, name: str) -> None:
    path = write_log(tmp_path / name, sample_messages())
    expected = python_can(path)
    assert len(expected) == 120
    assert fast(candump, path) == expected
    assert fast(candump, path, 1000) == expected


CANDUMP_LINES = """\
(1436509052.249713) vcan0 044#2A366C2BBA
(1436509052.449847) vcan0 05A#
(1436509052.650004) vcan0 123#R
(1436509052.650005) vcan0 123#r5
(1436509052.850004) vcan1 1F334455#1122334455667788

(1436509053.050004) vcan0 333##1112233445566778899AABB
(1436509053.050005) vcan0 333##3
(1436509053.050006) can0 12345678##2R
(1436509053.250004) vcan0 20000080#0000000000000000
(1436509053.250005) vcan0 20000004#0000000000000000
(1436509053.250006) vcan0 E0000080#00
(1436509053.450004) 0 123#11 T
(1436509053.450005) 12 0123#11 r
(1436509053.450006) vcan0 123#ABC
   (1436509053.650004)   vcan0\t7FF#0102   R \x20
(1436509053.650005) vcan0 0x7F#01
(1436509053.650006) vcan0 7E8#0341054000000000 t
(0.5) can_a 7E8#03410540000000000341054000000000034105400000000003410540000000000341054000000000
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_candump_lines_as_candump_writes_them(tmp_path: Path, newline: str) -> None:
    path = write_text(tmp_path / "dump.log", CANDUMP_LINES.replace("\n", newline))
    expected = python_can(path)
    assert len(expected) == 18
    assert fast(candump, path) == expected
    assert fast(candump, path, 2) == expected


def test_candump_many_frames_cross_blocks(tmp_path: Path) -> None:
    text = "".join(
        f"({1_600_000_000 + n / 3:f}) can{n % 3} {n:03X}#{n % 256:02X}{'' if n % 7 else ' T'}\n"
        for n in range(4000)
    )
    path = write_text(tmp_path / "many.log", text + CANDUMP_LINES)
    assert fast(candump, path, 1000) == python_can(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("(1.0) can0 123#11\nnot a frame\n(2.0) can0 123#22\n", 2),
        ("(1.0) can0 123#11\n(2.0) can0 123#1G\n", 2),
        ("(1.0) can0 123##\n", 1),
        ("(1.0) can0 123#11 R\n(x) can0 1#\n", 2),
    ],
)
def test_candump_garbage_raises_at_its_line(tmp_path: Path, text: str, line: int) -> None:
    path = write_text(tmp_path / "bad.log", text)
    got, error = fast_until_error(candump, path)
    assert got == python_can_until_error(path)
    assert error.path == path
    assert error.position == f"line {line}"


def test_candump_undecodable_text_raises_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(b"(1.0) can0 123#11\n(2.0) can0 123#22\n(3.0) can\xff0 1#\n")
    got, error = fast_until_error(candump, path)
    assert error.position == "line 3"
    assert len(got) == 2


def test_read_columns_uses_the_fast_reader(tmp_path: Path) -> None:
    path = write_log(tmp_path / "frames.log", sample_messages(30))
    chunks = list(read_columns(path, chunk_frames=CHUNK, reader="fast"))
    assert [fields(m) for c in chunks for m in c.messages()] == python_can(path)
