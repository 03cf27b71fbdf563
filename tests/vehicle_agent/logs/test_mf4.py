"""The fast MF4 reader yields exactly the frames of python-can's ``MF4Reader``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import can
import numpy as np
import pytest
from asammdf import MDF, Signal
from asammdf.blocks.mdf_v4 import MDF4
from asammdf.blocks.v4_blocks import SourceInformation
from asammdf.blocks.v4_constants import BUS_TYPE_CAN, SOURCE_BUS
from can.io.mf4 import ERR_DTYPE, RTR_DTYPE, STD_DTYPE

from tests.vehicle_agent.logs.messages import Fields, fields
from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import (
    DEFAULT_CHUNK,
    Unsupported,
    fast_reader_for,
    generic,
    mf4,
    mf4_native,
    read_columns,
)
from vehicle_agent.logs.columns import FrameColumns

ROOT = Path(__file__).resolve().parents[3]
TP_DIR = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"
DRIVE = ROOT / "tools" / "demo_data" / "drive-gnss" / "drive_545s.MF4"
TRUCK = ROOT / "tools" / "demo_data" / "truck-j1939" / "truck_idle_127s.MF4"


Read = Callable[[Path, int], Iterator[FrameColumns]]


@functools.cache
def python_can_fields(path: Path) -> list[Fields]:
    reader = can.MF4Reader(path)
    try:
        return [fields(msg) for msg in reader]
    finally:
        reader.stop()


def fast_fields(path: Path, chunk_frames: int, read: Read = mf4.read) -> list[Fields]:
    out: list[Fields] = []
    position = 0
    for chunk in read(path, chunk_frames):
        assert 0 < len(chunk) <= chunk_frames
        assert chunk.first_position == position
        position += len(chunk)
        out.extend(fields(msg) for msg in chunk.messages())
    return out


def write_mf4(path: Path, messages: Iterable[can.Message]) -> Path:
    writer = can.MF4Writer(path)
    for msg in messages:
        writer.on_message_received(msg)
    writer.stop()
    return path


@pytest.mark.parametrize("chunk_frames", [1000, DEFAULT_CHUNK])
@pytest.mark.parametrize("name", ["j1939_tp.MF4", "uds_isotp.MF4"])
def test_transport_protocol_logs(name: str, chunk_frames: int) -> None:
    path = TP_DIR / name
    assert fast_fields(path, chunk_frames) == python_can_fields(path)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_frames", [1000, DEFAULT_CHUNK])
@pytest.mark.parametrize("path", [DRIVE, TRUCK], ids=["drive", "truck"])
def test_demo_recordings(path: Path, chunk_frames: int) -> None:
    expected = python_can_fields(path)
    assert len(expected) in (65_296, 57_849)
    assert fast_fields(path, chunk_frames) == expected


@pytest.mark.parametrize("path", [TP_DIR / "j1939_tp.MF4", DRIVE], ids=["tp", "drive"])
def test_vlsd_length_found_a_block_at_a_time(path: Path) -> None:
    # CANedge's data bytes are VLSD, padded by asammdf to the group's longest sample.
    name = "CAN_DataFrame.DataBytes"
    with MDF(path) as own, MDF(path) as ours:
        own4, ours4 = cast(MDF4, own._mdf), cast(MDF4, ours._mdf)
        index = [channel.name for channel in own4.groups[0].channels].index(name)
        mf4._tell_vlsd_lengths(ours4, path, mf4._frame_groups(ours)[0], per_call=1000)
        assert ours4.vlsd_max_length == {(0, name): own4._determine_max_vlsd_sample_size(0, index)}


def mixed_messages(count: int) -> list[can.Message]:
    """Every kind of frame MF4Writer stores, on three channels, out of time order."""
    out: list[can.Message] = []
    for i in range(count):
        t = 1_700_000_000.0 + i * 0.001
        kind = i % 6
        if kind == 0:
            out.append(can.Message(t, 0x123, False, data=[i % 256, 1, 2], channel=i % 3))
        elif kind == 1:  # ahead of the frames written before it
            out.append(
                can.Message(t - 0.0035, 0x18FEF100 + i, data=bytes(8), channel=1, is_rx=False)
            )
        elif kind == 2:
            out.append(can.Message(t, 0x7DF, False, is_remote_frame=True, dlc=i % 9, channel=2))
        elif kind == 3:
            out.append(
                can.Message(t - 0.002, 0x55, is_error_frame=True, data=b"\x01\x02", channel=0)
            )
        elif kind == 4:
            fd = {
                "is_fd": True,
                "bitrate_switch": bool(i & 8),
                "error_state_indicator": bool(i & 16),
            }
            out.append(can.Message(t, 0x1ABCDE, data=bytes(range(i % 64 + 1)), channel=1, **fd))
        else:  # the same time stamp as an earlier frame of another kind
            out.append(can.Message(t - 0.005, 0x456, False, channel=0))
    return out


@pytest.mark.parametrize("chunk_frames", [1, 7, 1000])
def test_frames_written_by_python_can(tmp_path: Path, chunk_frames: int) -> None:
    path = write_mf4(tmp_path / "mixed.mf4", mixed_messages(300))
    expected = python_can_fields(path)
    kinds = {(f[3], f[4], f[9], f[11], f[12], f[5], f[10]) for f in expected}
    assert {k[:2] for k in kinds} == {
        (False, False),
        (True, False),
        (False, True),
    }  # data, remote, error
    assert {k[2:5] for k in kinds} >= {
        (True, True, False),
        (True, False, True),
        (False, False, False),
    }
    assert {k[5] for k in kinds} == {0, 1, 2}
    assert {k[6] for k in kinds} == {True, False}
    assert fast_fields(path, chunk_frames) == expected


def write_bulk(path: Path, sizes: Sequence[int], seed: int, id_type: str = "<u4") -> Path:
    """MF4Writer's layout written in one go: random fields, time stamps with many ties."""
    rng = np.random.default_rng(seed)
    mdf = MDF(version="4.10")
    source = SourceInformation(source_type=SOURCE_BUS, bus_type=BUS_TYPE_CAN)
    for name, dtype, size in zip(
        ("CAN_DataFrame", "CAN_ErrorFrame", "CAN_RemoteFrame"),
        (STD_DTYPE, ERR_DTYPE, RTR_DTYPE),
        sizes,
        strict=True,
    ):
        if name == "CAN_DataFrame":
            dtype = np.dtype(
                [(f, id_type if f.endswith(".ID") else dtype[f]) for f in dtype.names or ()]
            )
        samples = np.zeros(size, dtype=dtype)
        for field in dtype.names or ():
            if field.endswith("DataBytes"):
                samples[field] = rng.integers(0, 256, (size, 64))
            elif field.endswith(".ID"):
                samples[field] = rng.integers(0, 2**32, size)
            elif field.endswith("DataLength"):
                samples[field] = rng.integers(0, 70, size)  # beyond the 64 stored bytes too
            else:
                samples[field] = rng.integers(0, 3, size)
        times = np.round(np.cumsum(rng.normal(0.001, 0.004, size)), 3)
        mdf.append(Signal(name=name, samples=samples, timestamps=times, source=source))
    mdf.save(path, overwrite=True)
    mdf.close()
    return path


def test_groups_merged_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of python-can's 1000 records: the merge spans several per group.
    monkeypatch.setattr(mf4, "_MIN_BLOCKS_PER_CALL", 1)
    for seed, sizes in enumerate([(3500, 2200, 1300), (1, 4100, 999)]):
        path = write_bulk(tmp_path / f"bulk{seed}.mf4", sizes, seed)
        expected = python_can_fields(path)
        assert len(expected) == sum(sizes)
        assert fast_fields(path, 1000) == expected
        assert fast_fields(path, 2345) == expected


def test_nan_time_stamp_between_groups(tmp_path: Path) -> None:
    path = write_mf4(
        tmp_path / "nan.mf4",
        [
            can.Message(timestamp=1.0, arbitration_id=1),
            can.Message(timestamp=float("nan"), arbitration_id=2),
            can.Message(timestamp=2.0, is_error_frame=True),
        ],
    )
    with pytest.raises(LogFormatError, match=r"nan\.mf4.*channel group 0, frame 1"):
        list(mf4.read(path, 10))


def test_read_columns_uses_the_fast_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    path = TP_DIR / "uds_isotp.MF4"
    assert fast_reader_for(path) is mf4_native.read  # asammdf's for what it declines

    def refuse(path: Path, chunk_frames: int) -> None:
        raise AssertionError("python-can's reader was used")

    monkeypatch.setattr(generic, "read", refuse)
    messages = [
        msg
        for chunk in read_columns(path, reader="fast", chunk_frames=500)
        for msg in chunk.messages()
    ]
    assert [fields(msg) for msg in messages] == python_can_fields(path)


def test_unsupported_layout_falls_back_to_python_can(tmp_path: Path) -> None:
    # A float ID: python-can's int() truncates it, this reader leaves it to python-can.
    path = write_bulk(tmp_path / "float_id.mf4", (50, 0, 0), seed=7, id_type="<f8")
    with pytest.raises(Unsupported, match=r"CAN_DataFrame\.ID"):
        next(mf4.read(path, 10))
    chunks = list(read_columns(path, chunk_frames=10))
    assert [fields(msg) for chunk in chunks for msg in chunk.messages()] == python_can_fields(path)


def test_mdf3_is_unsupported(tmp_path: Path) -> None:
    mdf = MDF(version="3.30")
    mdf.append(Signal(np.arange(5, dtype="u1"), np.arange(5, dtype="f8"), name="speed"))
    saved = Path(mdf.save(tmp_path / "old.mdf", overwrite=True))
    mdf.close()
    path = saved.rename(tmp_path / "old.mf4")
    with pytest.raises(Unsupported, match="MDF version 3"):
        next(mf4.read(path, 10))


def cut_copy(original: Path, keep: float, tmp_path: Path) -> Path:
    data = original.read_bytes()
    path = tmp_path / "cut.mf4"
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize(
    ("original", "keep"),
    [(TP_DIR / "j1939_tp.MF4", 0.05), (TP_DIR / "j1939_tp.MF4", 0.9), (DRIVE, 0.5)],
)
def test_truncated_file(tmp_path: Path, original: Path, keep: float) -> None:
    path = cut_copy(original, keep, tmp_path)
    with pytest.raises(LogFormatError, match=r"cut\.mf4"):
        list(mf4.read(path, 1000))


def test_file_cut_in_its_data_gives_the_frames_before_the_cut(tmp_path: Path) -> None:
    # asammdf reads a cut file as one partially written: its complete records.
    path = cut_copy(TP_DIR / "j1939_tp.MF4", 0.5, tmp_path)
    expected = python_can_fields(path)
    assert 0 < len(expected) < len(python_can_fields(TP_DIR / "j1939_tp.MF4"))
    assert fast_fields(path, 1000) == expected


@pytest.mark.parametrize("read", [mf4.read, mf4_native.read_native], ids=["asammdf", "native"])
def test_garbage_file(tmp_path: Path, read: Read) -> None:
    path = tmp_path / "noise.mf4"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(LogFormatError, match=r"noise\.mf4' at header: not an MDF file"):
        list(read(path, 1000))


def test_corrupt_data_block(tmp_path: Path) -> None:
    # MF4Writer deflates its data blocks: spoil one and reading it fails.
    data = bytearray(write_mf4(tmp_path / "spoilt.mf4", mixed_messages(60)).read_bytes())
    block = data.find(b"##DZ")
    data[block + 60 : block + 80] = b"\xff" * 20
    path = tmp_path / "spoilt.mf4"
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError, match=r"spoilt\.mf4' at channel group 0, record 0"):
        list(mf4.read(path, 1000))
