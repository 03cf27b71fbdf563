"""Helpers of the rule tests: synthetic signal series and the recordings decoded independently.

The recordings are read with python-can's ``LogReader`` and decoded frame by
frame with cantools (J1939 frames matched on their PGN), not through the
project's readers, so the figures the tests compare with come from a path the
rules never use.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import can
import cantools
import numpy as np
import numpy.typing as npt

from cloud.rules.engine import SignalSamples

ROOT = Path(__file__).resolve().parents[3]
DRIVE = ROOT / "tools" / "demo_data" / "drive-gnss"
TRUCK = ROOT / "tools" / "demo_data" / "truck-j1939"
#: 2026-01-05 00:00 UTC, a base for synthetic scenarios.
T0 = 1_767_571_200_000_000
S = 1_000_000

Columns = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


def series(points: Iterable[tuple[float, float]], *, t0: int = T0) -> Columns:
    """(seconds after ``t0``, value) pairs as (µs timestamps, values) columns."""
    pairs = list(points)
    return (
        np.array([t0 + round(t * S) for t, _ in pairs], dtype=np.int64),
        np.array([v for _, v in pairs], dtype=np.float64),
    )


def steady(
    start_s: float, end_s: float, value: float, step_s: float = 1.0
) -> list[tuple[float, float]]:
    """One value every ``step_s`` from ``start_s`` up to (not including) ``end_s``."""
    count = round((end_s - start_s) / step_s)
    return [(start_s + i * step_s, value) for i in range(count)]


def split(samples: Mapping[str, Columns], cuts_us: list[int]) -> list[dict[str, SignalSamples]]:
    """The samples cut into consecutive time windows at ``cuts_us`` (like successive batches)."""
    bounds = [-(2**62), *cuts_us, 2**62]
    pieces: list[dict[str, SignalSamples]] = []
    for low, high in itertools.pairwise(bounds):
        piece: dict[str, SignalSamples] = {}
        for name, (ts, vs) in samples.items():
            keep = (ts >= low) & (ts < high)
            piece[name] = (ts[keep], vs[keep])
        pieces.append(piece)
    return pieces


def _decode(path: Path, dbc: Path, *, j1939: bool) -> dict[str, Columns]:
    db = cantools.database.load_file(str(dbc))
    assert isinstance(db, cantools.database.can.Database)
    by_key = {
        ((m.frame_id >> 8) & 0x3FFFF if j1939 else m.frame_id): m
        for m in db.messages
        if m.is_extended_frame == j1939
    }
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with can.LogReader(str(path)) as reader:
        for msg in reader:
            if msg.is_error_frame or msg.is_remote_frame or msg.is_extended_id != j1939:
                continue
            key = (msg.arbitration_id >> 8) & 0x3FFFF if j1939 else msg.arbitration_id
            message = by_key.get(key)
            if message is None:
                continue
            try:
                decoded = message.decode(bytes(msg.data), decode_choices=False)
            except (cantools.database.DecodeError, ValueError):
                continue
            ts = round(msg.timestamp * S)
            assert isinstance(decoded, dict)
            for name, value in decoded.items():
                assert isinstance(value, int | float)
                found[name].append((ts, float(value)))
    return {
        name: (np.array([t for t, _ in pts], np.int64), np.array([v for _, v in pts]))
        for name, pts in found.items()
    }


@cache
def drive() -> dict[str, Columns]:
    """The 545 s drive's signals (canmod-gps.dbc), decoded by python-can and cantools."""
    return _decode(DRIVE / "drive_545s.MF4", DRIVE / "canmod-gps.dbc", j1939=False)


@cache
def truck() -> dict[str, Columns]:
    """The idling truck's J1939 signals, decoded by python-can and cantools."""
    return _decode(
        TRUCK / "truck_idle_127s.MF4", TRUCK / "CSS-Electronics-SAE-J1939-DEMO.dbc", j1939=True
    )
