"""Recordings the benchmark writers' tests replay."""

from __future__ import annotations

import numpy as np

from tools.bench.workload import Recording
from vehicle_agent.logs.columns import BRS, ESI, EXTENDED, FD, RX, FrameColumns

__all__ = ["mixed_recording"]


def mixed_recording() -> Recording:
    """Six frames: classic and CAN FD (0 to 64 bytes), standard and extended, sent and
    received, BRS and ESI, on four channels."""
    n = 6
    data = np.zeros((n, 64), dtype=np.uint8)
    lengths = np.array([0, 8, 12, 64, 3, 48], dtype=np.uint8)
    for row, size in enumerate(lengths):
        data[row, :size] = np.arange(size, dtype=np.uint8) + row
    fd = np.array([False, False, True, True, False, True])
    extended = np.array([False, True, False, True, False, True])
    rx = np.array([True, False, True, True, False, True])
    brs = np.array([False, False, True, False, False, True])
    esi = np.array([False, False, False, True, False, True])
    flags = extended * EXTENDED | rx * RX | fd * FD | brs * BRS | esi * ESI
    return Recording(
        FrameColumns(
            timestamp=np.array([0.0, 0.001, 0.5, 0.75, 1.25, 3.0]),
            arbitration_id=np.array(
                [0x7FF, 0x1FFFFFFF, 0x123, 0x10, 0x0, 0x18FEF100], dtype=np.uint32
            ),
            flags=flags.astype(np.uint8),
            dlc=np.where(fd, lengths, np.minimum(lengths, 8)).astype(np.uint8),
            length=lengths,
            data=data,
            channel=np.array([0, 1, 2, 3, 1, 0], dtype=np.int32),
            channels=[0, 1, 2, 3],
        ),
        skipped=0,
    )
