"""The fast BLF reader yields exactly python-can's frames: the bundled logs, logs of
every kind python-can writes, hand-made objects python-can reads in odd ways, and
broken files (same frames up to the damage, then LogFormatError)."""

from __future__ import annotations

import decimal
import random
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest

from tests.vehicle_agent.logs.messages import Fields, fields
from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs import Unsupported, blf, fast_reader_for, read_columns
from vehicle_agent.logs.columns import FrameColumns

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = sorted((ROOT / "tests" / "data" / "python-can-logs").glob("*.blf"))


# Every field python-can's reader sets (``can.Message.__eq__`` skips some).
def python_can(path: Path) -> Iterator[Fields]:
    with can.BLFReader(str(path)) as reader:
        yield from (fields(msg) for msg in reader)


def of_chunks(chunks: Iterable[FrameColumns], chunk_frames: int) -> Iterator[Fields]:
    """The chunks' frames, checking each chunk's size, position and zero padding."""
    position = 0
    for chunk in chunks:
        assert 0 < len(chunk) <= chunk_frames
        assert chunk.first_position == position
        position += len(chunk)
        assert chunk.data.shape[1] >= int(chunk.length.max())
        for row, size in enumerate(chunk.length.tolist()):
            assert not chunk.data[row, size:].any()
        yield from (fields(msg) for msg in chunk.messages())


def fast(path: Path, chunk_frames: int = 7) -> list[Fields]:
    return list(of_chunks(blf.read(path, chunk_frames), chunk_frames))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk_frames", [1, 7, 65_536])
def test_bundled_logs_as_python_can_reads_them(path: Path, chunk_frames: int) -> None:
    expected = list(python_can(path))
    assert expected
    assert fast(path, chunk_frames) == expected


def messages(count: int, seed: int) -> list[can.Message]:
    """Frames of every kind the BLF writer stores, on several channels."""
    rng = random.Random(seed)
    stamp, out = 1_700_000_000.0 + rng.random(), []
    for _ in range(count):
        stamp += rng.random() / 100
        kind = rng.randrange(7)
        size = rng.choice([0, 1, 2, 5, 8, 12, 16, 20, 24, 32, 48, 64] if kind >= 5 else range(9))
        data = rng.randbytes(size)
        if kind == 4 and size >= 4:  # python-can's reader searches for b"LOBJ"
            data = b"LOBJ" + data[4:]
        out.append(
            can.Message(
                timestamp=stamp,
                arbitration_id=rng.getrandbits(29 if kind % 2 else 11),
                is_extended_id=bool(kind % 2),
                is_remote_frame=kind == 2,
                is_error_frame=kind == 3,
                channel=rng.choice([0, 1, 7]),
                dlc=rng.randrange(9) if kind == 2 else size,
                data=data,
                is_fd=kind >= 5,
                is_rx=rng.random() < 0.7,
                bitrate_switch=kind >= 5 and rng.random() < 0.5,
                error_state_indicator=kind >= 5 and rng.random() < 0.5,
            )
        )
    return out


def write_blf(path: Path, msgs: Iterable[can.Message], **options: Any) -> Path:
    with can.BLFWriter(str(path), **options) as writer:
        for msg in msgs:
            writer.on_message_received(msg)
    return path


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression_level": 0},
        {"max_container_size": 1000},
        {"compression_level": 0, "max_container_size": 333},
    ],
    ids=["zlib", "stored", "small-containers", "small-stored"],
)
@pytest.mark.parametrize("chunk_frames", [7, 1000])
def test_written_logs_as_python_can_reads_them(
    tmp_path: Path, options: dict[str, Any], chunk_frames: int
) -> None:
    path = write_blf(tmp_path / "mixed.blf", messages(6000, seed=1), **options)
    expected = list(python_can(path))
    assert len(expected) == 6000
    assert fast(path, chunk_frames) == expected


def obj(kind: int, body: bytes, version: int = 1, tflags: int = 2, ticks: int = 0) -> bytes:
    """One object as Vector's tools write them (padding: size % 4 bytes)."""
    header = 40 if version == 2 else 32
    head = struct.pack("<4sHHLL", b"LOBJ", header, version, header + len(body), kind)
    tail = struct.pack("<LBxHQ8x" if version == 2 else "<LHHQ", tflags, 0, 0, ticks)
    return head + tail[: header - 16] + body + bytes((header + len(body)) % 4)


def blf_file(path: Path, *containers: tuple[int, bytes]) -> Path:
    """A BLF file of (compression method, data) containers."""
    start = (2024, 2, 4, 29, 13, 14, 15, 16)
    header = struct.pack("<4sLBBBBBBBBQQLL8H8H", b"LOGG", 144, 5, 0, 0, 0, 2, 6, 8, 1,
                         0, 0, 0, 0, *start, *start)  # fmt: skip
    out = [header.ljust(144, b"\0")]
    for method, data in containers:
        payload = zlib.compress(data) if method == 2 else data
        size = 32 + len(payload)
        out.append(struct.pack("<4sHHLLH6xL4x", b"LOBJ", 16, 1, size, 10, method, len(data)))
        out.append(payload + bytes(size % 4))
    path.write_bytes(b"".join(out))
    return path


def can_body(channel: int, flags: int, dlc: int, ident: int, data: bytes) -> bytes:
    return struct.pack("<HBBL8s", channel, flags, dlc, ident, data)


def fd64_body(valid: int, fd_flags: int, direction: int, ext: int, data: bytes) -> bytes:
    fixed = struct.pack("<BBBBLLLLLLLHBBL", 3, 15, valid, 0, 0x80000123, 0, fd_flags,
                        0, 0, 0, 0, 0, direction, ext, 0)  # fmt: skip
    return fixed + data


def test_odd_objects_as_python_can_reads_them(tmp_path: Path) -> None:
    stream = b"".join(
        [
            obj(1, can_body(1, 0x81, 3, 0x123, b"abcdefgh"), version=2, tflags=1, ticks=12345),
            obj(86, can_body(2, 0, 15, 0x80000001, b"12345678") + bytes(8), ticks=2**53 + 1),
            obj(1, can_body(65535, 1, 8, 0x7FF, b"LOBJLOBJ"), tflags=1, ticks=2**60 + 7),
            obj(65, b"marker"),  # skipped types keep python-can's padding walk honest
            obj(1, can_body(1, 0, 2, 5, b"xy"), version=3),  # unknown header version
            obj(73, struct.pack("<HHLBBBxLLH2x8s", 4, 0, 0, 0, 0, 12, 0, 0x80000042, 0, b"err!")),
            obj(100, struct.pack("<HBBLLBBB5x64s", 2, 0x80, 9, 0x11, 0, 0, 7, 12, b"r" * 64)),
            obj(100, struct.pack("<HBBLLBBB5x64s", 2, 0, 30, 0x11, 0, 0, 3, 200, b"f" * 64)),
            obj(101, fd64_body(12, 0x3000, 0, 0, bytes(range(12)))),
            obj(101, fd64_body(20, 0x5000, 1, 0, bytes(range(7)))),  # issue 1905: zero filled
            obj(101, fd64_body(8, 0x1010, 0, 0, bytes(8))),  # remote: no data
            obj(101, fd64_body(8, 0x1000, 0, 76, bytes(range(8)))),  # ext data offset
            obj(101, fd64_body(0, 0x1000, 0, 0, b"")),
        ]
    )
    path = blf_file(tmp_path / "odd.blf", (2, stream[:100]), (0, stream[100:333]),
                    (7, b"unknown compression: skipped"), (2, stream[333:]))  # fmt: skip
    expected = list(python_can(path))
    assert len(expected) == 11
    assert fast(path, 1) == fast(path) == expected


def test_read_columns_uses_the_fast_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_blf(tmp_path / "log.blf", messages(100, seed=2))
    assert fast_reader_for(path) is blf.read
    calls: list[int] = []
    read = blf.read

    def spy(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
        calls.append(chunk_frames)
        return read(path, chunk_frames)

    monkeypatch.setattr(blf, "read", spy)
    chunks = list(read_columns(path, chunk_frames=30, reader="fast"))
    assert calls == [30]
    assert [len(c) for c in chunks] == [30, 30, 30, 10]
    assert list(of_chunks(chunks, 30)) == list(python_can(path))


def test_short_decimal_context_is_left_to_python_can(tmp_path: Path) -> None:
    path = write_blf(tmp_path / "log.blf", messages(50, seed=3))
    with decimal.localcontext(prec=12):
        with pytest.raises(Unsupported):
            next(blf.read(path, 10))
        chunks = read_columns(path, chunk_frames=10)
        assert list(of_chunks(chunks, 10)) == list(python_can(path))


def test_header_only_file_yields_nothing(tmp_path: Path) -> None:
    path = write_blf(tmp_path / "empty.blf", [])
    assert list(python_can(path)) == []
    assert list(blf.read(path, 10)) == []


def read_until_error(frames: Iterator[Fields]) -> tuple[list[Fields], Exception | None]:
    got: list[Fields] = []
    try:
        got.extend(frames)
    except Exception as exc:  # python-can raises several kinds
        return got, exc
    return got, None


def containers(blf_bytes: bytes) -> list[tuple[int, int]]:
    """(offset, size without padding) of each top-level object."""
    found, pos = [], 144
    while pos < len(blf_bytes):
        size = struct.unpack_from("<L", blf_bytes, pos + 8)[0]
        found.append((pos, size))
        pos += size + size % 4
    return found


@pytest.mark.parametrize("level", [-1, 0])
def test_truncated_file_raises_after_python_cans_frames(tmp_path: Path, level: int) -> None:
    whole = write_blf(tmp_path / "whole.blf", messages(3000, seed=4),
                      compression_level=level, max_container_size=1000).read_bytes()  # fmt: skip
    (first, _), (second, size), *_, (last, last_size) = containers(whole)
    # File header, object header, container header, container data, and at a
    # container boundary inside an object that spans it.
    cuts = [100, first + 10, second + 20, second + size - 1, last + last_size - 1, second]
    for cut in cuts:
        path = tmp_path / f"cut{cut}.blf"
        path.write_bytes(whole[:cut])
        expected, _ = read_until_error(python_can(path))
        got, error = read_until_error(of_chunks(blf.read(path, 64), 64))
        assert isinstance(error, LogFormatError), cut
        assert str(path) in str(error)
        assert re.search(r"byte \d+", str(error))
        assert got == expected, cut


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a BLF file"),
        (b"LOGG" + random.Random(5).randbytes(300), ""),
        (bytes(random.Random(6).randbytes(1000)), "not a BLF file"),
    ],
    ids=["empty", "garbage-after-signature", "garbage"],
)
def test_garbage_raises_log_format_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "garbage.blf"
    path.write_bytes(content)
    with pytest.raises(LogFormatError, match=re.escape(str(path))) as caught:
        list(blf.read(path, 10))
    assert reason in str(caught.value)


def test_damage_raises_after_python_cans_frames(tmp_path: Path) -> None:
    good = obj(1, can_body(1, 0, 1, 1, b"a"))
    not_zlib = struct.pack("<4sHHLLH6xL4x", b"LOBJ", 16, 1, 40, 10, 2, 8) + b"notzlib!"
    for name, bad, after in [
        ("size-zero", good[:8] + bytes(4) + good[12:], b""),  # python-can loops forever
        ("too-small", good[:8] + struct.pack("<L", 40) + good[12:], b""),  # or reads on
        ("no-object", b"\x01" * 48, b""),
        ("not-zlib", good, not_zlib),
        ("junk-after", good, b"JUNK" * 4),
    ]:
        path = blf_file(tmp_path / f"{name}.blf", (2, good + good + bad + good))
        path.write_bytes(path.read_bytes() + after)
        got, error = read_until_error(of_chunks(blf.read(path, 1), 1))
        assert isinstance(error, LogFormatError), name
        assert str(path) in str(error)
        assert len(got) == (4 if after else 2)
        if name not in ("size-zero", "too-small"):
            assert got == read_until_error(python_can(path))[0]


def test_missing_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.blf"):
        next(blf.read(tmp_path / "missing.blf", 10))
