"""The MF4 reader reads a large file in bounded pieces, so its memory stays flat.

asammdf, left to itself, maps the whole file into memory (every page read stays
resident) and reads a whole signal data block for every block of records: a
1 GB log written as one SD block made reading quadratic and grow to the file's
size. No timing here: the file asammdf is given and the size of each of its
reads are checked on a moderate file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import can
import numpy as np
import pytest
from asammdf import MDF

from tests.vehicle_agent.logs.messages import fields
from tools.bench.workload import Recording, write_mf4
from vehicle_agent.logs import mf4
from vehicle_agent.logs.columns import BRS, EXTENDED, FD, RX, FrameColumns


def fd_recording(n: int) -> Recording:
    """*n* CAN FD frames of 64 bytes: the payloads (VLSD signal data) are most of the file."""
    rng = np.random.default_rng(5)
    return Recording(
        FrameColumns(
            timestamp=(1_700_000_000.0 + np.arange(n) * 0.0005).astype(np.float64),
            arbitration_id=rng.integers(0, 0x1FFFFFFF, n, dtype=np.uint32),
            flags=np.full(n, EXTENDED | FD | BRS | RX, dtype=np.uint8),
            dlc=np.full(n, 64, dtype=np.uint8),
            length=np.full(n, 64, dtype=np.uint8),
            data=rng.integers(0, 256, (n, 64), dtype=np.uint8),
            channel=np.zeros(n, dtype=np.int32),
            channels=[1],
        ),
        skipped=0,
    )


class CountingReader(io.BufferedReader):
    """A file that records the size of every read."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path))
        self.reads: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.reads.append(len(data))
        return data


def test_large_file_read_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fd.mf4"
    frames = 200_000
    write_mf4(fd_recording(20_000), path, frames)  # 18 MB, three quarters one SD block
    size = path.stat().st_size
    opened: list[CountingReader] = []

    def counting_mdf(stream: Any, **options: Any) -> Any:
        # A path would be mapped into memory whole.
        assert isinstance(stream, io.BufferedIOBase), f"asammdf was given {stream!r}"
        opened.append(CountingReader(path))
        return MDF(opened[-1], **options)

    monkeypatch.setattr(mf4, "MDF", counting_mdf)
    try:
        assert sum(len(chunk) for chunk in mf4.read(path, 65_536)) == frames
    finally:
        for file in opened:
            file.close()
    (file,) = opened
    assert sum(file.reads) >= size  # all of it was read
    # asammdf reads its data blocks 4 MiB at a time; the signal data block was
    # read whole for each block of records.
    assert max(file.reads) < size / 3


def test_signal_data_in_pieces_gives_python_can_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fd.mf4"
    write_mf4(fd_recording(700), path, 2_000)
    # Pieces that cut samples (68 bytes each with their length) anywhere.
    monkeypatch.setattr(mf4, "SIGNAL_DATA_PIECE", 1000)
    reader = can.MF4Reader(path)
    try:
        expected = [fields(msg) for msg in reader]
    finally:
        reader.stop()
    chunks = list(mf4.read(path, 1000))
    assert [fields(msg) for chunk in chunks for msg in chunk.messages()] == expected
