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

from tests.vehicle_agent.logs.messages import Fields, fields
from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import asc, candump, read_columns
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.logs.generic import read_messages

ROOT = Path(__file__).resolve().parents[3]
LOG_DIR = ROOT / "tests" / "data" / "python-can-logs"
CHUNK = 7


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


CANDUMP_LINES = f"""\
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
(1436509053.650007) can_a 7E8#{"0341054000000000" * 5}
(1436509053.650008) a_channel_name_longer_than_24 7E8#01
(1436509053.650009) vcan0 123#R12
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_candump_lines_as_candump_writes_them(tmp_path: Path, newline: str) -> None:
    path = write_text(tmp_path / "dump.log", CANDUMP_LINES.replace("\n", newline))
    expected = python_can(path)
    assert len(expected) == 20
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
        ("(1.0) can0 123##x11\n", 1),
        ("(1.0) can0 123#11\x00 R\n", 1),
        ("(1.0) can0 123#11\tR\n", 1),
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


def test_candump_truncated_gzip_raises_after_the_lines_before(tmp_path: Path) -> None:
    whole = write_log(tmp_path / "whole.log.gz", sample_messages(3000))
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    got, error = fast_until_error(candump, path)
    assert "EOFError" in error.reason
    assert got == python_can(whole)[: len(got)]
    assert len(got) > 1000


def test_candump_not_gzip_raises_at_line_1(tmp_path: Path) -> None:
    path = write_text(tmp_path / "plain.log.gz", "(1.0) can0 123#11\n")
    got, error = fast_until_error(candump, path)
    assert (got, error.position) == ([], "line 1")


def test_read_columns_uses_the_fast_reader(tmp_path: Path) -> None:
    path = write_log(tmp_path / "frames.log", sample_messages(30))
    chunks = list(read_columns(path, chunk_frames=CHUNK, reader="fast"))
    assert [fields(m) for c in chunks for m in c.messages()] == python_can(path)


# --- ASC -----------------------------------------------------------------------------------

ASC_LOGS = sorted(LOG_DIR.glob("*.asc")) + sorted(LOG_DIR.glob("*.asc.gz"))


@pytest.mark.parametrize("path", ASC_LOGS, ids=lambda p: p.name)
def test_asc_bundled_logs(path: Path) -> None:
    expected = python_can(path)
    assert expected
    assert fast(asc, path) == expected


@pytest.mark.parametrize("name", ["frames.asc", "frames.asc.gz"])
def test_asc_written_by_python_can(tmp_path: Path, name: str) -> None:
    path = write_log(tmp_path / name, sample_messages())
    expected = python_can(path)
    assert len(expected) == 120
    assert fast(asc, path) == expected
    assert fast(asc, path, 1000) == expected


ASC_HEADER = "date Sam Sep 30 15:06:13.191 2017\nbase hex  timestamps absolute\n"
BYTES_64 = " ".join(f"{i:02X}" for i in range(64))
FD_NAME = " " * 32
CANFD_TAIL = "102203  133   303000 e0006659"
ASC_LINES = f"""\
internal events logged
// version 9.0.0
Begin Triggerblock Sam Sep 30 15:06:13.191 2017
   0.000000 Start of measurement
   1.000000 1  123             Rx   d 8 01 02 03 04 05 06 07 08
   1.000001 2  1ABCDEFx        Tx   d 3 0A 0b 0C  Length = 1 BitCount = 2 ID = 3x
   1.000002 1  1ABCDEFX        Rx   d 2 0A 0B
   1.000003 1  7FF             Rx   d 4 01 02
   1.000005 1  7FF             Rx   d 2 1 2
   1.000006 1  7FF             Rx   d F 01 02 03 04 05 06 07 08 09
   1.000007 3  100             Tx   r
   1.000008 3  100             Rx   r 5
   1.000009 1  ErrorFrame
   1.000010 0  123             rx   d 1 01
   1.000011 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%
   1.000012 CAN 1 Status:chip status error active
   2.000000 CANFD   1 Rx        300 {FD_NAME} 1 0 8  8 11 c2 03 04 05 06 07 08   {CANFD_TAIL}
   2.000001 CANFD   2 Tx   1C4D80A7x  Some_Name   0 1 f 64 {BYTES_64} 0 0 0 0
   2.000002 CANFD   3 Tx     50005x {FD_NAME} 0 1 5 0 140000 73 200050 7a60
   2.000003 CANFD   3 Tx     50005x {FD_NAME} 1 1 5 0 14 73 200050 7a60
   2.000004 CANFD   4 Rx        4EE {FD_NAME} 0 0 c 24 {BYTES_64[: 3 * 24]}0
   2.000005 CANFD   5 Tx ErrorFrame Not Acknowledge error, dominant error flag fffe c7 31ca
   2.000006 CANFD   1 Rx        300    12 {FD_NAME} 1 0 8  8 11 c2 03 04 05 06 07 08   102203
   2.000007 CANFD   1 Rx        301    1 0 8 8 11 c2 03 04 05 06 07 08 99
   3.000000 1  J1939TP FEE3p        6    0  0   -   Rx   d 23 A0 0F A6 60 3B D1 40 1F DE
   3.000001 1  124\x00            Rx   d 1 01
   3.000002 1  125             Foo  d 1 01
   3.000003 1  126             Rx   r 1 01
   3.000004 1  127             Rxyz d 1 01
End TriggerBlock
"""


@pytest.mark.parametrize("header", [ASC_HEADER, ""], ids=["header", "no-header"])
def test_asc_lines_as_vector_and_python_can_write_them(tmp_path: Path, header: str) -> None:
    path = write_text(tmp_path / "lines.asc", header + ASC_LINES)
    expected = python_can(path)
    assert len(expected) == 20
    assert fast(asc, path) == expected
    assert fast(asc, path, 1) == expected


def test_asc_first_line_after_a_short_header_is_dropped(tmp_path: Path) -> None:
    text = "date Sam Sep 30 15:06:13.191 2017\n 1.0 1  123  Rx  d 1 01\n 2.0 1  124  Rx  d 1 02\n"
    path = write_text(tmp_path / "short.asc", text)
    expected = python_can(path)
    assert [f[1] for f in expected] == [0x124]
    assert fast(asc, path) == expected


def test_asc_timestamps_without_a_point_are_no_frames(tmp_path: Path) -> None:
    text = "internal events logged\n" + "".join(f" {n} 1  123  Rx  d 1 01\n" for n in range(20))
    path = write_text(tmp_path / "points.asc", text)
    assert fast(asc, path) == python_can(path) == []


def test_asc_decimal_base(tmp_path: Path) -> None:
    text = "base dec  timestamps absolute\ninternal events logged\n" + "".join(
        f"   {n / 8:.6f} 1  {100 + n}{'x' if n % 2 else ''}  Rx   d 3 {n % 256} 7 255\n"
        for n in range(50)
    )
    text += "   9.000000 CANFD   1 Rx   300   1 0 12 12 1 2 3 4 5 6 7 8 9 10 11 12 1\n"
    path = write_text(tmp_path / "dec.asc", text)
    expected = python_can(path)
    assert len(expected) == 51
    assert fast(asc, path) == expected


def test_asc_many_frames_cross_blocks(tmp_path: Path) -> None:
    path = write_log(tmp_path / "many.asc", sample_messages(6000, special=False))
    assert fast(asc, path, 1000) == python_can(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("internal events logged\n 1.0 1  123  Rx  d 1 01\n 1.5 1  12G  Rx  d 1 01\n", 3),
        ("internal events logged\n 1.0 1  123  Rx  d 1 01\n 1.5 1  123  Tx\n", 3),
        ("internal events logged\n 1.0 1  123  Rx  d 1 1FF\n", 2),
        ("internal events logged\n 1.0 1  7FF  Rx  d 4 01 02 Length = 9\n", 2),
        ("internal events logged\n 1.0 CANFD 1 Rx 300 1 0 8 8\n", 2),
        ("internal events logged\n 1.0 CANFD 1 Rx 300 1 0 5 0\n", 2),
        ("internal events logged\n 1.0 CANFD 1 Rx 300 1 0 8 x8 01\n", 2),
        ("base HEX\n 1.0 1  123  Rx  d 1 01\n", 1),
    ],
)
def test_asc_lines_python_can_rejects_raise_at_their_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = write_text(tmp_path / "bad.asc", text)
    got, error = fast_until_error(asc, path)
    assert got == python_can_until_error(path)
    assert error.position == f"line {line}"


def test_asc_garbage_is_skipped_like_python_can_does(tmp_path: Path) -> None:
    path = write_text(tmp_path / "garbage.asc", "hello\nworld\n\x00\x01 binary?\n")
    assert fast(asc, path) == python_can(path) == []
