"""The native MF4 reader yields exactly python-can's frames, and the asammdf reader's chunks."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from asammdf import MDF, Signal
from asammdf.blocks.cutils import sort_data_block

from tests.vehicle_agent.logs.messages import Fields
from tests.vehicle_agent.logs.test_mf4 import (
    DRIVE,
    TP_DIR,
    TRUCK,
    cut_copy,
    fast_fields,
    mixed_messages,
    python_can_fields,
    write_bulk,
)
from tests.vehicle_agent.logs.test_mf4 import write_mf4 as write_with_python_can
from tests.vehicle_agent.logs.test_mf4_bounded import fd_recording
from tools.bench.workload import Recording, load_recording, write_mf4
from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs import DEFAULT_CHUNK, Unsupported, mf4, mf4_native, mf4_split, mf4_unsorted
from vehicle_agent.logs.columns import EXTENDED, RX, FrameColumns
from vehicle_agent.logs.mf4_blocks import BlockFile, data_groups, start_fields
from vehicle_agent.logs.mf4_layout import SPARE, Bytes

BUNDLED = sorted([*TP_DIR.glob("*.MF4"), DRIVE, TRUCK])
SMALL = sorted(TP_DIR.glob("*.MF4"))


def native_fields(path: Path, chunk_frames: int) -> list[Fields]:
    return fast_fields(path, chunk_frames, mf4_native.read_native)


def assert_same_chunks(path: Path, chunk_frames: int) -> None:
    """The native reader's chunks are the asammdf reader's, array for array."""
    theirs = list(mf4.read(path, chunk_frames))
    ours = list(mf4_native.read_native(path, chunk_frames))
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.first_position == other.first_position
        assert [(c, type(c)) for c in mine.channels] == [(c, type(c)) for c in other.channels]
        assert mine.timestamp.view(np.uint64).tolist() == other.timestamp.view(np.uint64).tolist()
        for name in ("arbitration_id", "flags", "dlc", "length", "channel", "data"):
            mine_column, other_column = getattr(mine, name), getattr(other, name)
            assert mine_column.dtype == other_column.dtype, name
            np.testing.assert_array_equal(mine_column, other_column, err_msg=name)


@pytest.mark.parametrize("chunk_frames", [1, 7, 1000, DEFAULT_CHUNK])
@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_transport_protocol_logs(path: Path, chunk_frames: int) -> None:
    # CANedge's raw layout: an unfinished file, one unsorted data group.
    assert native_fields(path, chunk_frames) == python_can_fields(path)
    assert_same_chunks(path, chunk_frames)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_frames", [4093, DEFAULT_CHUNK])
@pytest.mark.parametrize("path", [DRIVE, TRUCK], ids=["drive", "truck"])
def test_demo_recordings(path: Path, chunk_frames: int) -> None:
    # The drive: finished and sorted, data bytes in an SD block; the truck: unfinished.
    assert native_fields(path, chunk_frames) == python_can_fields(path)
    assert_same_chunks(path, chunk_frames)


def tp_recording() -> Recording:
    return load_recording(TP_DIR / "uds_isotp.MF4")


@pytest.mark.parametrize("chunk_frames", [1, 999, 4096])
def test_bench_workload_file(tmp_path: Path, chunk_frames: int) -> None:
    # tools.bench.workload.write_mf4: one sorted group, data bytes in one SD block.
    path = tmp_path / "bench.mf4"
    write_mf4(tp_recording(), path, 5000)
    assert native_fields(path, chunk_frames) == python_can_fields(path)
    assert_same_chunks(path, chunk_frames)


def test_blocks_and_signal_data_read_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small blocks of records and small pieces of signal data: every refill path.
    monkeypatch.setattr(mf4_native, "BLOCK_RECORDS", 97)
    monkeypatch.setattr(mf4_native, "PIECE", 1000)
    path = tmp_path / "fd.mf4"
    write_mf4(fd_recording(3000), path, 3000)  # CAN FD, 64 bytes: rows of 8 words
    assert native_fields(path, 500) == python_can_fields(path)
    path = tmp_path / "bench.mf4"
    write_mf4(tp_recording(), path, 2500)
    assert native_fields(path, 333) == python_can_fields(path)


@pytest.mark.parametrize("chunk_frames", [1, 7, 1000])
def test_frames_written_by_python_can(tmp_path: Path, chunk_frames: int) -> None:
    # MF4Writer: three groups to merge, DZ blocks, a fixed 64-byte array of data bytes.
    path = write_with_python_can(tmp_path / "mixed.mf4", mixed_messages(300))
    assert native_fields(path, chunk_frames) == python_can_fields(path)
    assert_same_chunks(path, chunk_frames)


def test_groups_merged_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mf4_native, "BLOCK_RECORDS", 1000)
    for seed, sizes in enumerate([(3500, 2200, 1300), (1, 4100, 999)]):
        path = write_bulk(tmp_path / f"bulk{seed}.mf4", sizes, seed)
        assert native_fields(path, 1000) == python_can_fields(path)
        assert native_fields(path, 2345) == python_can_fields(path)


def test_unsorted_data_in_small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pieces of a few records carry their last, incomplete record over; no split is kept.
    monkeypatch.setattr(mf4_unsorted, "_READ_CHUNK", 997)
    monkeypatch.setattr(mf4_unsorted, "_KEPT_SPLIT", 0)
    for path in SMALL:
        assert native_fields(path, 1000) == python_can_fields(path)


def write_raw_canedge(path: Path, frames: int, seed: int) -> Path:
    """An unfinished CANedge file (the truck's blocks) holding data, error and remote frames.

    Records are written in the truck's unsorted data group: data frames (id 1)
    with their data bytes in VLSD records (id 2) now after, now before them,
    error frames (id 3) and remote frames (id 4), time stamps out of order.
    """
    original = TRUCK.read_bytes()
    head = original[: original.index(b"##DT", 14000) + 24]  # the DT block's length: unset
    rng = np.random.default_rng(seed)
    out, offset = bytearray(), 0
    for i in range(frames):
        ns = (i + rng.normal(0, 3)) * 1e6  # time: f8 nanoseconds (times 1e-9: seconds)
        kind = rng.choice(["data", "data", "data", "error", "remote"])
        bus_ide = int(rng.integers(0, 4)) << 1 | int(rng.integers(0, 2))
        ident = int(rng.integers(0, 1 << 29)) << 3 | bus_ide
        if kind == "error":
            out += b"\x03" + struct.pack("<dB", ns, int(rng.integers(0, 256)))
        elif kind == "remote":
            length_dir = int(rng.integers(0, 9)) << 1 | int(rng.integers(0, 2))
            dlc = int(rng.integers(0, 16)) << 4
            out += b"\x04" + struct.pack("<dIBB", ns, ident, length_dir, dlc)
        else:
            size = int(rng.choice([0, 3, 8, 12, 64]))
            fd_dlc = int(rng.integers(0, 256))
            record = b"\x01" + struct.pack("<dIBBQ", ns, ident, size << 1 | i % 2, fd_dlc, offset)
            sample = b"\x02" + struct.pack("<I", size) + rng.bytes(size)
            out += record + sample if rng.random() < 0.7 else sample + record
            offset += 4 + size
    path.write_bytes(head + bytes(out))
    return path


@pytest.mark.parametrize("seed", [1, 2])
def test_raw_layout_with_several_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Small pieces: records carried over, samples found in the piece before.
    monkeypatch.setattr(mf4_unsorted, "_READ_CHUNK", 4000)
    path = write_raw_canedge(tmp_path / "raw.mf4", 3000, seed)
    expected = python_can_fields(path)
    assert len(expected) == 3000
    assert {(f[3], f[4]) for f in expected} == {(False, False), (True, False), (False, True)}
    assert native_fields(path, 1000) == expected
    assert native_fields(path, 1) == expected


def test_records_found_as_asammdf_sorts_them() -> None:
    """The vectorised split finds the records asammdf's C sort finds, junk included."""
    rng = np.random.default_rng(11)
    for trial in range(200):
        chosen = rng.choice(np.arange(1, 256), size=rng.integers(1, 5), replace=False)
        ids = [int(i) for i in chosen]
        record_sizes = {i: 0 if rng.random() < 0.4 else int(rng.integers(1, 30)) for i in ids}
        stream = bytearray()
        regular = trial % 3 == 0  # a repeating pattern: cursors fall into step late or never
        while len(stream) < int(rng.integers(0, 12_000)):
            record_id = ids[len(stream) % len(ids)] if regular else int(rng.choice(ids))
            size = record_sizes[record_id]
            if size:
                stream += bytes([record_id]) + rng.bytes(size)
            else:
                length = 8 if regular else int(rng.integers(0, 70))
                stream += bytes([record_id]) + struct.pack("<I", length) + rng.bytes(length)
        for _ in range(int(rng.integers(0, 3))):  # damage: an unknown id, a huge length
            if stream:
                stream[int(rng.integers(0, len(stream)))] = int(rng.integers(0, 256))
        end = len(stream)
        buffer = np.zeros(end + SPARE, dtype=np.uint8)
        buffer[:end] = np.frombuffer(bytes(stream), dtype=np.uint8)
        sizes = np.full(256, -1, dtype=np.int64)
        for record_id, size in record_sizes.items():
            sizes[record_id] = 1 + size if size else 0
        starts, stop, how = mf4_split.split(Bytes(buffer), end, sizes)

        expected: dict[int, list[bytes]] = {i: [] for i in ids}
        rest = sort_data_block(bytes(stream), expected, record_sizes, 1, None)
        found: dict[int, list[bytes]] = {i: [] for i in ids}
        for at, following in zip(starts, [*starts[1:], stop], strict=True):
            found[int(buffer[at])].append(bytes(stream[at + 1 : following]))
        assert found == expected, trial
        # asammdf keeps an incomplete last record, and drops all after an unknown id.
        assert rest == (bytes(stream[stop:]) if how == mf4_split.END else b""), trial


def vlsd_recording(lengths: list[int]) -> Recording:
    n = len(lengths)
    return Recording(
        FrameColumns(
            timestamp=1_700_000_000.0 + np.arange(n, dtype=np.float64) * 0.001,
            arbitration_id=np.arange(n, dtype=np.uint32) + 0x100,
            flags=np.full(n, EXTENDED | RX, dtype=np.uint8),
            dlc=np.array(lengths, dtype=np.uint8),
            length=np.array(lengths, dtype=np.uint8),
            data=np.arange(1, 9, dtype=np.uint8) * np.ones((n, 1), dtype=np.uint8),
            channel=np.zeros(n, dtype=np.int32),
            channels=[0],
        ),
        skipped=0,
    )


def test_data_length_beyond_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # asammdf pads VLSD samples to the group's longest: DataBytes[:DataLength]
    # then ends in zeros, up to that longest length (found by a second pass).
    monkeypatch.setattr(mf4_native, "BLOCK_RECORDS", 4)
    path = tmp_path / "padded.mf4"
    write_mf4(vlsd_recording([3, 2, 1, 0, 5, 2, 8, 1, 2]), path, 9)
    raw = bytearray(path.read_bytes())
    first_record = raw.index(b"##DT") + 24
    for record, declared in ((0, 7), (1, 60), (5, 8)):  # DataLength: bits 1-7 of byte 12
        at = first_record + 22 * record + 12
        raw[at] = (raw[at] & 1) | declared << 1
    path.write_bytes(bytes(raw))
    expected = python_can_fields(path)
    assert [f[8] for f in expected[:2]] == [bytes([1, 2, 3, 0, 0, 0, 0]), bytes([1, 2]) + bytes(6)]
    assert native_fields(path, 3) == expected


def read_or_refuse(path: Path) -> list[Fields] | None:
    """The frames the reader gives, or None when it raises LogFormatError or Unsupported."""
    try:
        return native_fields(path, 1000)
    except (LogFormatError, Unsupported):
        return None


@pytest.mark.parametrize("original", BUNDLED, ids=lambda p: p.name)
def test_truncated_files(tmp_path: Path, original: Path) -> None:
    # Metadata cut: LogFormatError. Data cut: an unfinished file is read up to the
    # cut, as asammdf does; a finished one is left to the asammdf path.
    outcomes = set()
    for keep in (0.001, 0.004, 0.05, 0.3, 0.7, 0.999):
        path = cut_copy(original, keep, tmp_path)
        got = read_or_refuse(path)
        if got is not None:
            assert got == python_can_fields.__wrapped__(path)
        outcomes.add(got is None)
    assert True in outcomes


def test_damaged_metadata_never_crashes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    original = (TP_DIR / "j1939_tp.MF4").read_bytes()
    metadata = original.index(b"##DT")
    for trial in range(60):
        damaged = bytearray(original)
        for at in rng.integers(64, metadata, size=int(rng.integers(1, 4))):
            damaged[at] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{trial}.mf4"
        path.write_bytes(bytes(damaged))
        read_or_refuse(path)  # anything but LogFormatError or Unsupported fails the test


def test_corrupt_data_block(tmp_path: Path) -> None:
    path = write_with_python_can(tmp_path / "spoilt.mf4", mixed_messages(60))
    data = bytearray(path.read_bytes())
    block = data.find(b"##DZ")
    data[block + 60 : block + 80] = b"\xff" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(LogFormatError, match=r"spoilt\.mf4' at byte \d+: DZ block does not infl"):
        list(mf4_native.read_native(path, 1000))


def test_vlsd_offset_past_the_data(tmp_path: Path) -> None:
    path = tmp_path / "offsets.mf4"
    write_mf4(tp_recording(), path, 500)
    raw = bytearray(path.read_bytes())
    last_offset = raw.index(b"##DT") + 24 + 22 * 499 + 14
    raw[last_offset : last_offset + 8] = struct.pack("<Q", 10**9)
    path.write_bytes(bytes(raw))
    with pytest.raises(LogFormatError, match=r"at signal data: VLSD offset 1000000000 past"):
        list(mf4_native.read_native(path, 100))


def channel_at(path: Path, name: str) -> int:
    """Where the CN block of the channel *name* is."""
    with path.open("rb") as file:
        blocks = BlockFile(file, path.stat().st_size)
        groups = data_groups(blocks, start_fields(blocks)[0])
    return next(c.at for g in groups for cg in g.groups for c in cg.walk() if c.name == name)


def patched(original: Path, tmp_path: Path, at: int, value: bytes) -> Path:
    data = bytearray(original.read_bytes())
    data[at : at + len(value)] = value
    path = tmp_path / f"patched_{original.name}"
    path.write_bytes(bytes(data))
    return path


def test_other_conversions_are_left_to_asammdf(tmp_path: Path) -> None:
    conversion = DRIVE.read_bytes().index(b"##CC")  # the time channel's: linear
    path = patched(DRIVE, tmp_path, conversion + 24 + 4 * 8, bytes([2]))  # now rational
    with pytest.raises(Unsupported, match="time channel 'Timestamp' has a conversion of type 2"):
        next(mf4_native.read_native(path, 1000))


def test_invalidation_bits_are_left_to_asammdf(tmp_path: Path) -> None:
    at = channel_at(TRUCK, "CAN_DataFrame.ID")
    flags = TRUCK.read_bytes()[at + 24 + 8 * 8 + 12]
    path = patched(TRUCK, tmp_path, at + 24 + 8 * 8 + 12, bytes([flags | 0x2]))
    with pytest.raises(Unsupported, match=r"CAN_DataFrame\.ID has invalidation bits"):
        next(mf4_native.read_native(path, 1000))


def test_unhandled_compression_and_versions(tmp_path: Path) -> None:
    data = bytearray(write_with_python_can(tmp_path / "zstd.mf4", mixed_messages(60)).read_bytes())
    data[data.find(b"##DZ") + 24 + 2] = 2  # zip type 2: zstd
    path = tmp_path / "zstd.mf4"
    path.write_bytes(bytes(data))
    with pytest.raises(Unsupported, match="compressed with method 2"):
        next(mf4_native.read_native(path, 1000))
    mdf = MDF(version="3.30")
    mdf.append(Signal(np.arange(5, dtype="u1"), np.arange(5, dtype="f8"), name="speed"))
    old = Path(mdf.save(tmp_path / "old.mdf", overwrite=True))
    mdf.close()
    with pytest.raises(Unsupported, match=r"MDF version 3\.30"):
        next(mf4_native.read_native(old.rename(tmp_path / "old.mf4"), 10))


def test_declined_layouts_go_to_the_asammdf_reader(tmp_path: Path) -> None:
    path = patched(DRIVE, tmp_path, 8, b"4.20")  # a version this reader does not claim
    with pytest.raises(Unsupported, match=r"MDF version 4\.20"):
        next(mf4_native.read_native(path, 1000))
    assert fast_fields(path, 4096, mf4_native.read) == python_can_fields(path)
    # A float ID: both MF4 readers decline, python-can reads it.
    path = write_bulk(tmp_path / "float_id.mf4", (50, 0, 0), seed=7, id_type="<f8")
    with pytest.raises(Unsupported, match=r"CAN_DataFrame\.ID is of data type 4"):
        next(mf4_native.read_native(path, 10))
    with pytest.raises(Unsupported, match=r"CAN_DataFrame\.ID is float64"):
        next(mf4_native.read(path, 10))


def test_memory_stays_about_a_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 500 records and signal data pieces of 16 KiB: a 4 MB file is read
    # holding a few hundred KB at a time (python-can's frames are checked elsewhere).
    monkeypatch.setattr(mf4_native, "BLOCK_RECORDS", 500)
    monkeypatch.setattr(mf4_native, "PIECE", 16 << 10)
    path = tmp_path / "fd.mf4"
    write_mf4(fd_recording(50_000), path, 50_000)
    assert path.stat().st_size > 3_500_000
    tracemalloc.start()
    try:
        frames = sum(len(chunk) for chunk in mf4_native.read_native(path, 500))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == 50_000
    assert peak < 1_000_000
