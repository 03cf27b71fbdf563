"""Exactness of the precompiled decoders: every message of the DBC corpus they
accept decodes like cantools on random, extreme and wrong-length payloads, and the
Decoder gives the same samples and statistics on the bundled recordings with the
fast path on and off."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import cantools
import pytest
from cantools.database.can import Database as CanDatabase
from cantools.database.can import Message, Signal
from cantools.database.conversion import BaseConversion
from cantools.database.errors import DecodeError, UnsupportedDatabaseFormatError

from tests.vehicle_agent.values import same_value
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder, DecodeStats
from vehicle_agent.fastdecode import compile_message
from vehicle_agent.frames import Frame
from vehicle_agent.sources import LogSource

ROOT = Path(__file__).resolve().parents[2]
CANTOOLS_DIR = ROOT / "tests" / "data" / "cantools-dbc"
DEMO_DIR = ROOT / "tools" / "demo_data"
CSS_DIR = ROOT / "tests" / "data" / "css-electronics"
# Files cantools itself refuses (as in test_decoding.py).
KNOWN_REJECTED = {
    "incorrect-sig_valtype.dbc",
    "incorrect-val.dbc",
    "issue_199.dbc",
    "issue_199_extended.dbc",
}
CORPUS = sorted(
    [p for p in CANTOOLS_DIR.iterdir() if p.suffix.lower() == ".dbc"]
    + sorted(DEMO_DIR.rglob("*.dbc"))
    + sorted(CSS_DIR.rglob("*.dbc"))
)
LOADABLE = [p for p in CORPUS if p.name not in KNOWN_REJECTED]
RANDOM_PAYLOADS = 200

DRIVE_DIR = DEMO_DIR / "drive-gnss"
TRUCK_DIR = DEMO_DIR / "truck-j1939"


def _load(path: Path) -> CanDatabase:
    database = cantools.database.load_file(path, database_format="dbc", strict=False)
    assert isinstance(database, CanDatabase)
    return database


def _outcome(decode: object, data: bytes) -> tuple[str, object]:
    try:
        result = decode(data)  # type: ignore[operator]
    except DecodeError:
        return ("DecodeError", None)
    return ("ok", result)


def _assert_same_decode(message: Message, data: bytes) -> None:
    fast = compile_message(message)
    assert fast is not None

    def reference(payload: bytes) -> object:
        return message.decode(payload, decode_choices=False, scaling=True)

    expected_kind, expected = _outcome(reference, data)
    actual_kind, actual = _outcome(fast, data)
    assert actual_kind == expected_kind, (message.name, data.hex())
    if expected_kind == "ok":
        assert isinstance(expected, dict)
        assert isinstance(actual, dict)
        assert list(actual) == list(expected), (message.name, data.hex())
        for name, value in expected.items():
            assert same_value(actual[name], value), (
                message.name,
                name,
                data.hex(),
                actual,
                expected,
            )


def test_the_corpus_loads_except_the_known_rejections() -> None:
    rejected = set()
    for path in CORPUS:
        try:
            _load(path)
        except UnsupportedDatabaseFormatError:
            rejected.add(path.name)
    assert rejected == KNOWN_REJECTED


@pytest.mark.parametrize("path", LOADABLE, ids=[str(p.relative_to(ROOT)) for p in LOADABLE])
def test_fast_decode_equals_cantools(path: Path) -> None:
    database = _load(path)
    for message in database.messages:
        if compile_message(message) is None:
            continue
        length = message.length
        rng = random.Random(f"{path.name}:{message.name}:{message.frame_id}")
        payloads = [bytes(length), b"\xff" * length]
        payloads += [rng.randbytes(length) for _ in range(RANDOM_PAYLOADS)]
        # Wrong lengths: shorter raises DecodeError, longer is cut to the length.
        payloads += [rng.randbytes(n) for n in range(length)]
        payloads += [rng.randbytes(length + extra) for extra in (1, 2, 8, 56)]
        payloads += [b"\xff" * (length + 1), bytes(length + 3)]
        for data in payloads:
            _assert_same_decode(message, data)


def test_coverage_of_the_corpus() -> None:
    """The fast path takes every simple message; the exclusions are the expected kinds."""
    total = accepted = 0
    excluded: dict[str, int] = {}
    for path in LOADABLE:
        for message in _load(path).messages:
            total += 1
            if compile_message(message) is not None:
                accepted += 1
                continue
            if message.is_multiplexed():
                reason = "multiplexed"
            elif message.length > 8:
                reason = "longer than 8 bytes"
            else:
                reason = "layout"
            excluded[reason] = excluded.get(reason, 0) + 1
    assert accepted / total > 0.85, (accepted, total, excluded)
    assert set(excluded) <= {"multiplexed", "longer than 8 bytes", "layout"}


def _message(signals: list[Signal], length: int = 8) -> Message:
    return Message(frame_id=0x123, name="M", length=length, signals=signals, strict=False)


LE: Literal["little_endian"] = "little_endian"
BE: Literal["big_endian"] = "big_endian"


@pytest.mark.parametrize(
    ("start", "length", "byte_order", "is_signed", "is_float", "accepted"),
    [
        (0, 8, LE, False, False, True),
        (7, 16, BE, False, False, True),
        (3, 13, LE, True, False, True),
        (12, 1, BE, True, False, True),
        (0, 32, LE, False, True, True),
        (7, 64, BE, False, True, True),
        (0, 16, LE, False, True, False),  # half floats: left to cantools
        (60, 8, LE, False, False, False),  # past the end of the message
    ],
)
def test_synthetic_signals(
    start: int,
    length: int,
    byte_order: Literal["little_endian", "big_endian"],
    is_signed: bool,
    is_float: bool,
    accepted: bool,
) -> None:
    for scale, offset in [(1, 0), (2, -5), (0.5, 0), (1, 0.25), (-0.1, 3.0)]:
        signal = Signal(
            name="S",
            start=start,
            length=length,
            byte_order=byte_order,
            is_signed=is_signed,
            conversion=BaseConversion.factory(scale=scale, offset=offset, is_float=is_float),
        )
        message = _message([signal])
        if not accepted:
            assert compile_message(message) is None
            continue
        rng = random.Random(f"{start}:{length}:{byte_order}:{is_signed}:{is_float}")
        payloads = [bytes(8), b"\xff" * 8, *(rng.randbytes(8) for _ in range(RANDOM_PAYLOADS))]
        for data in [*payloads, b"", b"\x01" * 7, b"\x02" * 9]:
            _assert_same_decode(message, data)


def test_overlapping_signals_are_left_to_cantools() -> None:
    signals = [
        Signal(name="A", start=0, length=12),
        Signal(name="B", start=8, length=8),
    ]
    assert compile_message(_message(signals)) is None


def _frames(path: Path) -> list[Frame]:
    with LogSource(path) as source:
        return list(source)


def _run(decoder: Decoder, frames: list[Frame]) -> list[list[tuple[int, int | float]]]:
    return [decoder.decode(frame) for frame in frames]


def _assert_same_samples(
    fast: list[list[tuple[int, int | float]]], slow: list[list[tuple[int, int | float]]]
) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert len(a) == len(b)
        for (index_a, value_a), (index_b, value_b) in zip(a, b, strict=True):
            assert index_a == index_b
            assert same_value(value_a, value_b)


@pytest.mark.parametrize(
    ("recording", "specs"),
    [
        (
            DRIVE_DIR / "drive_545s.MF4",
            [DbcSpec(DRIVE_DIR / "canmod-gps.dbc", bus="gnss")],
        ),
        (
            DRIVE_DIR / "drive_545s.MF4",
            [DbcSpec(DRIVE_DIR / "gnss.dbc", bus="gnss")],
        ),
        (
            TRUCK_DIR / "truck_idle_127s.MF4",
            [
                DbcSpec(TRUCK_DIR / "CSS-Electronics-SAE-J1939-DEMO.dbc", bus="j1939", channel="1"),
                DbcSpec(TRUCK_DIR / "canmod-gps.dbc", bus="gnss", channel="2"),
            ],
        ),
    ],
    ids=["drive-canmod", "drive-gnss", "truck"],
)
def test_recordings_decode_the_same_fast_and_slow(recording: Path, specs: list[DbcSpec]) -> None:
    frames = _frames(recording)
    fast = Decoder(specs, fast=True)
    slow = Decoder(specs, fast=False)
    fast_samples = _run(fast, frames)
    _assert_same_samples(fast_samples, _run(slow, frames))
    assert fast.stats == slow.stats
    assert fast.stats.decoded > 0
    # With a selection and skipped repeats, the accounting is the same too.
    indices = frozenset(range(0, len(fast.catalog), 2))
    for decoder in (fast, slow):
        decoder.stats = DecodeStats()
        decoder.select(indices, skip_unchanged=indices)
    _assert_same_samples(_run(fast, frames), _run(slow, frames))
    assert fast.stats == slow.stats


def test_wrong_lengths_count_as_decode_errors_the_same() -> None:
    spec = DbcSpec(DRIVE_DIR / "canmod-gps.dbc", bus="gnss")
    frames = _frames(DRIVE_DIR / "drive_545s.MF4")
    altered: list[Frame] = []
    for number, frame in enumerate(frames[:3000]):
        cut = frame.data[: number % (len(frame.data) + 1)]
        grown = frame.data + bytes(number % 5)
        altered.append(frame._replace(data=cut))
        altered.append(frame._replace(data=grown))
    fast = Decoder([spec], fast=True)
    slow = Decoder([spec], fast=False)
    _assert_same_samples(_run(fast, altered), _run(slow, altered))
    assert fast.stats == slow.stats
    assert fast.stats.decode_errors > 0
