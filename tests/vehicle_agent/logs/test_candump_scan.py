"""The compiled candump scanner and the blocks of bytes it reads: python-can's frames still.

The candump tests of ``test_text_readers`` run through the scanner (numba is a
dependency); here: the numpy path it replaces when numba is missing, the
shapes of line the scanner takes and those it leaves to the line parser
(compared field by field with python-can either way), and
:func:`~vehicle_agent.logs.text.ascii_blocks`, which hands the scanner raw
bytes and switches to decoded text where a file stops being plain ASCII.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.vehicle_agent.logs.test_text_readers import (
    CANDUMP_LINES,
    fast,
    fast_until_error,
    python_can,
    python_can_until_error,
    sample_messages,
    write_log,
    write_text,
)
from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import candump, candump_scan, warm_up
from vehicle_agent.logs.text import ascii_blocks, pack_rows, text_blocks


@pytest.fixture
def numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The candump reader as it reads without numba."""
    monkeypatch.setattr(candump_scan, "AVAILABLE", False)


def test_the_scanner_is_compiled() -> None:
    # numba is a dependency: the other candump tests must go through the compiled scanner
    assert candump_scan.AVAILABLE
    assert hasattr(candump_scan._scan, "py_func")


class _NumbaWithoutCache:
    """numba where no cache directory can be written: ``njit(cache=True)`` raises."""

    def __init__(self) -> None:
        self.options: list[dict[str, bool]] = []

    def njit(self, **options: bool) -> Callable[[Callable[..., int]], Callable[..., int]]:
        self.options.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return lambda function: function


def test_without_a_cache_directory_the_scanner_still_compiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _NumbaWithoutCache()
    monkeypatch.setattr(candump_scan, "_numba", fake)

    def double(x: int) -> int:
        return 2 * x

    assert candump_scan._jit(double)(4) == 8
    assert fake.options == [{"cache": True, "nogil": True}, {"nogil": True}]


class _ScannerRefused(Exception):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise _ScannerRefused


@pytest.mark.parametrize("name", ["frames.log", "frames.log.gz"])
def test_logs_from_a_size_on_are_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Below ``SCAN_FROM_BYTES`` on disk (a .gz counting four times) the numpy path reads
    the log: loading numba would cost more than the scanner saves."""
    path = write_log(tmp_path / name, sample_messages(200))
    size = path.stat().st_size * (4 if name.endswith(".gz") else 1)
    monkeypatch.setattr(candump_scan.FrameBuffer, "scan", _refuse)
    monkeypatch.setattr(candump, "SCAN_FROM_BYTES", size + 1)
    assert fast(candump, path) == python_can(path)
    monkeypatch.setattr(candump, "SCAN_FROM_BYTES", size)
    with pytest.raises(_ScannerRefused):
        list(candump.read(path, 100))


def test_warm_up_loads_the_scanner_for_candump_only(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(candump_scan, "warm_up", lambda: loaded.append("scanner"))
    warm_up(Path("x.log.gz"))
    warm_up(Path("x.blf"))  # no warm_up: nothing to load
    warm_up(Path("x.unknown"))
    assert loaded == ["scanner"]
    monkeypatch.setattr(candump_scan, "AVAILABLE", False)
    assert not candump.warm_up()
    assert loaded == ["scanner"]


def test_warm_up_compiles_the_scanner() -> None:
    candump_scan.warm_up()
    # compiled (or loaded from the cache) for the arrays of a block of bytes
    assert getattr(candump_scan._scan, "signatures", None)


@pytest.mark.usefixtures("numpy_path")
def test_without_numba_the_numpy_path_reads_the_same(tmp_path: Path) -> None:
    written = write_log(tmp_path / "frames.log", sample_messages(300))
    lines = write_text(tmp_path / "lines.log", CANDUMP_LINES)
    for path in (written, lines):
        assert fast(candump, path) == python_can(path)


def test_scanner_and_numpy_path_agree_on_every_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_log(tmp_path / "frames.log", sample_messages(2000))
    scanned = fast(candump, path, 100)
    monkeypatch.setattr(candump_scan, "AVAILABLE", False)
    assert fast(candump, path, 100) == scanned == python_can(path)


# The usual lines of the bulk path, each taken by the scanner (not the line parser).
SCANNED = """\
(1436509052.249713) vcan0 044#2A366C2BBA
(5.) can0 1#
(.5) can0 1#01
(007) 07 7FF#R12
(0.0000000000000005) can0 1#ABC
(9007199254740992) can0 1ABCDEF0##300112233445566778899AABBCCDDEEFF R
(1.5) can0 20000080#0011223344556677 T

(1.6) can0 60000088#
(1.7) can0 1FFFFFFF#{}
""".format("AA" * 64)


def test_scanner_reads_the_usual_lines(tmp_path: Path, line_parser_frames: list[int]) -> None:
    path = write_text(tmp_path / "usual.log", SCANNED)
    expected = python_can(path)
    assert len(expected) == 9
    assert fast(candump, path) == expected
    assert sum(line_parser_frames) == 0


# Lines of other shapes: each goes to the line parser, which reads it as python-can does.
PARSED = [
    "(9007199254740993) can0 1#",  # 2**53 + 1: not exact in a double
    "(123456789012345678) can0 1#",  # 18 digits
    "(0.000000000000000000000005) can0 1#",  # 10**-24
    "(1e3) can0 1#",
    "(+1.5) can0 1#",
    "(1_0.5) can0 1#",
    "[1.5] can0 1#",
    " (1.5) can0 1#",
    "(1.5)  can0 1#",
    "(1.5) can0 1# ",
    "(1.5) can0 0x1F#01",
    "(1.5) can0 123456789#01",
    "(1.5) can0 1#+F",
    "(1.5) can0 1#R123",
    "(1.5) can0 1#" + "AA" * 65,
    "(1.5) a_channel_name_of_more_than_32_bytes 1#",
    "(1.5) can0 1#11 RX",
]


@pytest.mark.parametrize("line", PARSED)
def test_other_lines_go_to_the_line_parser(
    tmp_path: Path, line_parser_frames: list[int], line: str
) -> None:
    path = write_text(tmp_path / "odd.log", f"(1.0) can0 2#02\n{line}\n(2.0) can0 3#03\n")
    got, failure = _outcome(path)
    expected, expected_failure = _python_can_outcome(path)
    assert (got, failure) == (expected, expected_failure)
    assert sum(line_parser_frames) == (len(expected) - 2 if failure is None else 0)


def _outcome(path: Path) -> tuple[list[object], str | None]:
    try:
        return list(fast(candump, path)), None
    except LogFormatError:
        got, error = fast_until_error(candump, path)
        return list(got), error.position


def _python_can_outcome(path: Path) -> tuple[list[object], str | None]:
    try:
        return list(python_can(path)), None
    except LogFormatError:  # the odd line is line 2
        return list(python_can_until_error(path)), "line 2"


def test_random_timestamps_read_as_float_reads_them(tmp_path: Path) -> None:
    """Digits around the limits (17 digits, 2**53, 10**-22): ``float()`` of the text."""
    rng = random.Random(7)
    stamps = []
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 20)))
        if rng.random() < 0.3:
            digits = rng.choice(("9007199254740", "900719925474099", "1")) + digits[:4]
        at = rng.randrange(len(digits) + 1)
        stamps.append(digits[:at] + "." + digits[at:] if rng.random() < 0.9 else digits)
    text = "".join(f"({s}) can{n % 3} {n:03X}#{n % 256:02X}\n" for n, s in enumerate(stamps))
    path = write_text(tmp_path / "stamps.log", text)
    got = fast(candump, path, 1000)
    assert got == python_can(path)
    assert [frame[0] for frame in got] == [float(stamp) for stamp in stamps]


def test_many_channels_past_the_table(tmp_path: Path, line_parser_frames: list[int]) -> None:
    names = [f"ch{n}" for n in range(candump_scan.MAX_CHANNELS + 40)] + ["7", "07", "ch1"]
    text = "".join(f"({n}.25) {name} {n:03X}#{n % 256:02X}\n" for n, name in enumerate(names))
    path = write_text(tmp_path / "channels.log", text)
    expected = python_can(path)
    assert fast(candump, path, 30) == expected
    assert fast(candump, path, 1000) == expected
    assert sum(line_parser_frames) == 2 * 42  # the names past the table, in both reads


# --- blocks of bytes -----------------------------------------------------------------------


def _lines(blocks: Iterator[tuple[int, str | bytes]]) -> tuple[list[tuple[int, str]], str | None]:
    """Each line of the blocks with its number, and the position of the error, if any."""
    out: list[tuple[int, str]] = []
    try:
        for first, block in blocks:
            text = block.decode("ascii") if isinstance(block, bytes) else block
            out.extend((first + n, line) for n, line in enumerate(text.split("\n")))
    except LogFormatError as exc:
        return out, exc.position
    return out, None


PLAIN = "".join(f"({n}.5) can0 {n:03X}#{n % 256:02X}\n" for n in range(300))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("plain", PLAIN.encode()),
        ("no last newline", PLAIN.encode()[:-1]),
        ("blank lines", PLAIN.replace("5) can0 01", "5) can0 01\n\n").encode()),
        ("crlf late", (PLAIN + PLAIN.replace("\n", "\r\n")).encode()),
        ("cr late", (PLAIN + "(1.0) can0 1#\r(2.0) can0 2#\n" + PLAIN).encode()),
        ("utf-8 late", (PLAIN + "(1.0) cañ0 1#\n" + PLAIN).encode()),
        ("bad utf-8 late", PLAIN.encode() + b"(1.0) can\xff0 1#\n" + PLAIN.encode()),
        ("cut utf-8 at the end", PLAIN.encode() + "é".encode()[:1]),
        ("empty", b""),
    ],
)
def test_ascii_blocks_are_the_lines_of_text_blocks(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / "file.log"
    path.write_bytes(content)
    for size in (1, 50, 1000, 1 << 18):
        got = _lines(ascii_blocks(path, size))
        assert got == _lines(text_blocks(path, size)), (name, size)
        if name == "plain" and size == 1000:
            assert all(isinstance(block, bytes) for _, block in ascii_blocks(path, size))


def test_ascii_blocks_of_a_truncated_gzip(tmp_path: Path) -> None:
    whole = gzip.compress(PLAIN.encode() * 30)
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole[: len(whole) // 2])
    got, position = _lines(ascii_blocks(path, 4096))
    assert (got, position) == _lines(text_blocks(path, 4096))
    assert position is not None
    assert len(got) > 100


def test_candump_turning_to_text_mid_file(tmp_path: Path) -> None:
    """A CRLF and a non-ASCII channel after many plain blocks: the same frames, in order."""
    head = "".join(f"({n}.125) can{n % 2} {n:03X}#{n % 256:02X}\n" for n in range(20_000))
    tail = "(1.0) cañ 1#01\r\n(2.0) can0 2#02 T\r\n"
    path = write_text(tmp_path / "mixed.log", head + tail + head)
    expected = python_can(path)
    assert len(expected) == 40_002
    assert fast(candump, path, 4096) == expected


# --- chunks filled by the scanner ----------------------------------------------------------


def _plain(count: int, start: int = 0) -> str:
    return "".join(
        f"({n}.25) can{n % 2} {n % 2048:03X}#{n % 256:02X}{n % 7:02X}\n"
        for n in range(start, start + count)
    )


def test_can_fd_frames_after_classic_ones_widen_the_chunk(
    tmp_path: Path, line_parser_frames: list[int]
) -> None:
    """Classic frames, then CAN FD ones in the middle of a block and of a chunk."""
    fd = "".join(f"({n}.5) can1 1ABCDEF{n % 10}##1{'5A' * (8 + n % 57)}\n" for n in range(500))
    path = write_text(tmp_path / "fd.log", _plain(12_000) + fd + _plain(12_000, 40_000))
    expected = python_can(path)
    assert fast(candump, path, 10_000) == expected
    assert fast(candump, path, 7) == expected
    assert sum(line_parser_frames) == 0


def test_lines_for_the_line_parser_between_scanned_blocks(
    tmp_path: Path, line_parser_frames: list[int]
) -> None:
    """A block with a line of 100 data bytes (wider than the scanner's 64) goes through
    the line parser in file order; the blocks around it are scanned."""
    odd = f"(2.0) can9 123#{'AB' * 100}\n(2.1) 7 1#01\n(2.2) 07 20000080#00\n\n"
    path = write_text(tmp_path / "odd.log", _plain(12_000) + odd + _plain(12_000, 30_000))
    expected = python_can(path)
    assert len(expected) == 24_003
    for chunk_frames in (4096, 30_000):
        chunks = list(candump.read(path, chunk_frames))
        assert [len(c) for c in chunks[:-1]] == [chunk_frames] * (len(chunks) - 1)
        assert fast(candump, path, chunk_frames) == expected
    # each read: only the 100-byte frame (the other lines of its block are scanned)
    assert line_parser_frames == [1, 1, 1, 1]


def test_chunks_name_only_the_channels_they_use(tmp_path: Path) -> None:
    text = _plain(1000).replace("can1", "other") + _plain(1000, 1000).replace("can1", "can0")
    path = write_text(tmp_path / "channels.log", text)
    chunks = list(candump.read(path, 1000))
    assert [list(c.channels) for c in chunks] == [["can0", "other"], ["can0"]]
    assert fast(candump, path, 1000) == python_can(path)


def test_frame_buffer_pads_appended_rows_with_zeros() -> None:
    """Rows copied in are zero past their data, whatever the buffer held there."""
    channels = candump_scan.Channels(str)
    buffer = candump_scan.FrameBuffer(4, width=64)
    buffer.data[:] = 0xFF  # what np.empty may hold
    wide = pack_rows([(1.5, 0x123, 0, 10, bytes(range(1, 11)), "can0")])
    narrow = pack_rows([(2.5, 0x7FF, 0, 2, b"\x01\x02", None), (3.5, 1, 0, 0, b"", "can1")])
    buffer.append(wide, channels)
    buffer.append(narrow, channels)
    buffer.append(narrow, channels)  # past the capacity: the rows move to new arrays
    chunk = buffer.take(5, channels)
    short = [1, 2] + [0] * 8
    assert chunk.data.tolist() == [list(range(1, 11)), short, [0] * 10, short, [0] * 10]
    names = [chunk.channels[c] for c in chunk.channel.tolist()]
    assert names == ["can0", None, "can1", None, "can1"]
    assert chunk.timestamp.tolist() == [1.5, 2.5, 3.5, 2.5, 3.5]
