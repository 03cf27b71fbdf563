"""The fast BLF reader's shortcuts give what the plain way gives: ISA-L inflating
what zlib inflates (and failing where zlib fails, with zlib's error), containers
parsed joined as python-can parses them one by one, and a run of like objects
parsed without the walk over every ``LOBJ``."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import can
import numpy as np
import pytest

from tests.vehicle_agent.logs.messages import Fields
from tests.vehicle_agent.logs.test_blf import (
    blf_file,
    can_body,
    containers,
    fast,
    obj,
    of_chunks,
    python_can,
    read_until_error,
    write_blf,
)
from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import blf, blf_objects

# --- inflating ---------------------------------------------------------------------


def zlib_reference(data: bytes) -> tuple[bytes, str] | str:
    """What python-can's zlib inflating gives: (bytes, "" or "cut"), or the error text."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data)
    except zlib.error as exc:
        return f"log container does not inflate: {exc}"
    return out, "" if inflater.eof else "log container's zlib data cut short"


def inflated(data: bytes) -> tuple[bytes, str] | str:
    """What the reader's inflating gives, in the terms of :func:`zlib_reference`."""
    try:
        return blf._inflate(data, "byte 0")
    except blf._Broken as exc:
        where, reason = exc.args
    return reason if where == "byte 0" else f"at {where}: {reason}"


def with_header(stream: bytes, cmf: int, flg: int) -> bytes:
    """*stream* under another zlib header (its check bits made valid)."""
    flg = flg & 0xE0
    flg |= (31 - (cmf * 256 + flg) % 31) % 31
    return bytes([cmf, flg]) + stream[2:]


def variants(stream: bytes, seed: int) -> Iterator[bytes]:
    """*stream*, cut, with junk after it, with bytes flipped and under odd headers."""
    rng = random.Random(seed)
    yield stream
    yield stream + b"JUNK"
    for cut in (0, 1, 2, 10, len(stream) // 2, len(stream) - 4, len(stream) - 1):
        yield stream[:cut]
    for _ in range(150):
        damaged = bytearray(stream)
        for _ in range(rng.choice([1, 1, 2, 5])):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        yield bytes(damaged)
    yield with_header(stream, 0x88, 0x00)  # a 64 KiB window: zlib refuses it, ISA-L would not
    yield with_header(stream, 0x78, 0x20)  # a preset dictionary
    yield with_header(stream, 0x68, 0x00)  # a 16 KiB window


@pytest.mark.parametrize("level", [1, 6, 9])
def test_inflating_gives_zlibs_bytes_and_errors(tmp_path: Path, level: int) -> None:
    log = write_blf(tmp_path / "log.blf", frames(3000, seed=level), compression_level=level)
    raw = log.read_bytes()
    streams = [raw[at + 32 : at + size] for at, size in containers(raw)]
    assert streams
    assert all(blf._usual_header(s) for s in streams)  # ISA-L inflates them
    outcomes = set()
    for stream in streams[:2]:
        for variant in variants(stream, seed=len(stream)):
            expected = zlib_reference(variant)
            assert inflated(variant) == expected
            outcomes.add(expected if isinstance(expected, str) else expected[1])
    # Whole, cut and refused streams were all met.
    assert {"", "log container's zlib data cut short"} <= outcomes
    assert any(text.startswith("log container does not inflate") for text in outcomes)


def test_only_the_usual_zlib_header_goes_to_isal() -> None:
    stream = zlib.compress(b"LOBJ" * 100)
    assert blf._usual_header(stream)
    assert not blf._usual_header(with_header(stream, 0x88, 0x00))
    assert not blf._usual_header(with_header(stream, 0x78, 0x20))
    assert not blf._usual_header(stream[:1])
    assert not blf._usual_header(bytes([0x78, 0x9D]))  # check bits wrong


# --- containers joined -------------------------------------------------------------


def frames(count: int, seed: int, *, kinds: int = 3) -> list[can.Message]:
    """Classic data frames (kinds=1), with remote and extended ones (3), some of whose
    payloads hold b"LOBJ" (python-can's reader searches for it)."""
    rng = random.Random(seed)
    stamp, out = 1_700_000_000.0, []
    for _ in range(count):
        stamp += rng.random() / 1000
        kind = rng.randrange(kinds)
        data = rng.randbytes(rng.randrange(9))
        if rng.random() < 0.2:
            data = b"LOBJLOBJ"[: len(data)]
        out.append(
            can.Message(
                timestamp=stamp,
                arbitration_id=rng.getrandbits(29 if kind == 1 else 11),
                is_extended_id=kind == 1,
                is_remote_frame=kind == 2,
                channel=rng.choice([0, 1]),
                dlc=len(data),
                data=data,
                is_rx=rng.random() < 0.8,
            )
        )
    return out


def one_by_one(path: Path, chunk_frames: int, monkeypatch: pytest.MonkeyPatch) -> list[Fields]:
    """The frames of *path* with every container parsed on its own."""
    with monkeypatch.context() as patch:
        patch.setattr(blf, "BATCH_BYTES", 1)
        return list(of_chunks(blf.read(path, chunk_frames), chunk_frames))


@pytest.mark.parametrize("level", [-1, 0])
@pytest.mark.parametrize("container", [100, 1000, 128 * 1024])
def test_joined_containers_give_python_cans_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: int, container: int
) -> None:
    path = write_blf(tmp_path / "log.blf", frames(20_000, seed=container),
                     compression_level=level, max_container_size=container)  # fmt: skip
    expected = list(python_can(path))
    assert len(expected) == 20_000
    assert fast(path, 4096) == expected
    assert one_by_one(path, 4096, monkeypatch) == expected


@pytest.mark.parametrize("block", [1, 7, 100, 5000])
def test_any_block_size_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    whole = write_blf(tmp_path / "log.blf", frames(2000, seed=block),
                      max_container_size=700).read_bytes()  # fmt: skip
    (_, _), (second, size), *_ = containers(whole)
    monkeypatch.setattr(blf, "BLOCK_BYTES", block)
    for cut in (len(whole), second + size // 2, second + 10, second):
        path = tmp_path / f"cut{cut}.blf"
        path.write_bytes(whole[:cut])
        expected, _ = read_until_error(python_can(path))
        got, error = read_until_error(of_chunks(blf.read(path, 500), 500))
        assert got == expected, cut
        assert (error is None) == (cut == len(whole)), cut
        assert error is None or f"byte {second}" in str(error)


def damaged_logs(whole: bytes) -> Iterator[tuple[str, bytes]]:
    """The log with one container in its middle damaged in several ways."""
    spans = containers(whole)
    at, size = spans[len(spans) // 2]
    data_at = at + 32
    bad = bytearray(whole)
    bad[data_at + size // 2 - 32] ^= 0xFF
    yield "flipped", bytes(bad)
    bad = bytearray(whole)
    bad[data_at : data_at + 2] = b"\x00\x00"
    yield "not-zlib", bytes(bad)
    yield "cut", whole[: at + size - 5]
    yield "cut-after", whole[: at + size + size % 4]


def test_damage_in_joined_containers_is_reported_as_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = write_blf(tmp_path / "whole.blf", frames(5000, seed=7),
                      max_container_size=2000).read_bytes()  # fmt: skip
    for name, content in damaged_logs(whole):
        path = tmp_path / f"{name}.blf"
        path.write_bytes(content)
        got, error = read_until_error(of_chunks(blf.read(path, 64), 64))
        with monkeypatch.context() as patch:
            patch.setattr(blf, "BATCH_BYTES", 1)
            alone, error_alone = read_until_error(of_chunks(blf.read(path, 64), 64))
        expected, _ = read_until_error(python_can(path))
        assert got == alone == expected, name
        assert isinstance(error, LogFormatError), name
        assert str(error) == str(error_alone), name
        assert str(path) in str(error)


def test_a_corrupt_object_inside_joined_containers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [obj(86, can_body(1, 0, 8, 0x100 + i, bytes(8)), ticks=i) for i in range(200)]
    corrupt = good[0][:8] + struct.pack("<L", 40) + good[0][12:]  # smaller than its record
    stream = b"".join([*good[:150], corrupt, *good[150:]])
    parts = [(2, stream[i : i + 700]) for i in range(0, len(stream), 700)]
    path = blf_file(tmp_path / "corrupt.blf", *parts)
    got, error = read_until_error(of_chunks(blf.read(path, 10), 10))
    with monkeypatch.context() as patch:
        patch.setattr(blf, "BATCH_BYTES", 1)
        _, error_alone = read_until_error(of_chunks(blf.read(path, 10), 10))
    assert len(got) == 150
    assert isinstance(error, LogFormatError)
    assert str(error) == str(error_alone)
    assert "sizes do not add up (40)" in str(error)
    assert "data offset" in str(error)


# --- runs of like objects ----------------------------------------------------------


def record(kind: int, rng: random.Random) -> bytes:
    """A random record of a classic (86), error (73) or CAN FD (100) frame."""
    channel, flags, ident = rng.choice([1, 2]), rng.choice([0, 1, 0x80]), rng.getrandbits(32)
    if kind == 73:
        dlc, data = rng.randrange(16), b"LOBJ" + rng.randbytes(4)
        return struct.pack("<HHLBBBxLLH2x8s", channel, 0, 0, 0, 0, dlc, 0, ident, 0, data)
    if kind == 100:
        dlc, fd_flags, valid = rng.randrange(16), rng.randrange(8), rng.randrange(70)
        data = b"LOBJ" + rng.randbytes(60)
        fields = (channel, flags, dlc, ident, 0, 0, fd_flags, valid, data)
        return struct.pack("<HBBLLBBB5x64s", *fields)
    return can_body(channel, flags, rng.randrange(16), ident, b"LOBJ" + rng.randbytes(4))


def run_of(count: int, seed: int, version: int = 1, kind: int = 86) -> bytes:
    rng = random.Random(seed)
    objects = []
    for _ in range(count):
        tflags, ticks = rng.choice([1, 2]), rng.getrandbits(40)
        body = record(kind, rng)
        objects.append(obj(kind, body, version=version, tflags=tflags, ticks=ticks))
    return b"".join(objects)


def tails(one: bytes) -> Iterator[tuple[str, bytes, bool]]:
    """What may follow a run: (name, bytes, whether the run's shortcut reads it)."""
    other = obj(1, can_body(1, 0, 8, 5, bytes(8)))
    yield "nothing", b"", True
    yield "3 bytes", b"LOB", True
    yield "7 junk bytes", b"JUNKJUN", True
    yield "a cut header", one[:12], True
    yield "a cut object", one[:-1], True
    yield "a cut object of another size", other[:20], True
    yield "8 junk bytes", b"JUNKJUNK", False  # python-can: no next object
    yield "LOBJ further on", b"xxLOBJ" + one[4:20], False
    yield "another object", other, False
    yield "a run of another type", obj(1, can_body(1, 0, 8, 5, bytes(8))) * 3, False
    yield "an object too small", one[:8] + struct.pack("<L", 40) + one[12:], False


@pytest.mark.parametrize("kind", [86, 73, 100])
@pytest.mark.parametrize("version", [1, 2])
def test_a_run_parses_as_the_walk_over_every_object(version: int, kind: int) -> None:
    body = run_of(300, seed=version, version=version, kind=kind)
    one = run_of(1, seed=99, version=version, kind=kind)
    for name, tail, shortcut in tails(one):
        buffer = body + tail + blf_objects.PAD
        end = len(buffer) - len(blf_objects.PAD)
        a = np.frombuffer(buffer, np.uint8)
        assert (blf_objects._run(a, end, 5.0) is not None) == shortcut, name
        quick = blf_objects.parse(buffer, end, 5.0)
        walked = blf_objects._walked(a, end, 5.0)
        assert quick[1:] == walked[1:], name
        assert quick[0] is not None
        assert walked[0] is not None
        for field in blf_objects.Piece._fields:
            column, other = getattr(quick[0], field), getattr(walked[0], field)
            assert column.dtype == other.dtype, name
            assert np.array_equal(column, other), name


@pytest.mark.parametrize("kind", [86, 73, 100])
def test_runs_of_each_kind_as_python_can_reads_them(tmp_path: Path, kind: int) -> None:
    stream = run_of(3000, seed=kind, kind=kind)
    parts = [(2, stream[i : i + 50_000]) for i in range(0, len(stream), 50_000)]
    path = blf_file(tmp_path / "run.blf", *parts)
    expected = list(python_can(path))
    assert len(expected) == 3000
    assert fast(path, 1000) == expected
