"""Plain values shared by the gateway and the store.

Nothing here knows about protobuf, gRPC or SQLAlchemy: the edges translate
their types into these and back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CatalogMap",
    "IngestResult",
    "LatestValue",
    "SampleColumns",
    "SignalDef",
    "SignalStats",
    "VehicleIdentity",
    "newest_per_signal",
]


@dataclass(frozen=True, slots=True)
class VehicleIdentity:
    """Who is on the other end of a stream, as proven by its credential."""

    tenant: str
    vehicle_id: str


@dataclass(frozen=True, slots=True)
class SignalDef:
    """One signal an agent can decode; ``index`` is the agent's own number for it."""

    index: int
    bus: str
    message: str
    name: str
    frame_id: int = 0
    is_extended: bool = False
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: Mapping[int, str] = field(default_factory=dict)
    is_float: bool = False
    pgn: int = 0


@dataclass(frozen=True, slots=True)
class CatalogMap:
    """The agent's catalog index → the tenant-wide ``signals.id`` of that signal."""

    signal_ids: Mapping[int, int]

    def __len__(self) -> int:
        return len(self.signal_ids)


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """A batch's samples as three parallel columns (store-side signal ids)."""

    signal_ids: Sequence[int]
    ts_us: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        if not len(self.signal_ids) == len(self.ts_us) == len(self.values):
            raise ValueError("sample columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a batch did to the store: rows written, or nothing because it was already there."""

    stored: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class LatestValue:
    """The newest value of one signal of one vehicle."""

    bus: str
    message: str
    signal: str
    unit: str
    ts_us: int
    value: float
    #: The value description when the signal has one for this value.
    label: str | None = None


@dataclass(frozen=True, slots=True)
class SignalStats:
    """Aggregates over the stored samples of one signal; ``None`` when there are none."""

    count: int
    mean: float | None
    minimum: float | None
    maximum: float | None


def newest_per_signal(samples: SampleColumns) -> list[tuple[int, tuple[int, float]]]:
    """(signal id, (ts, value)) of the newest sample of each signal, sorted by signal id.

    Sorted so that concurrent writers of one vehicle's latest state lock its rows
    in the same order (no deadlock). Ties on ts go to the later sample.
    """
    times = list(samples.ts_us)
    pairs = zip(times, samples.values, strict=True)
    # sorted() of an ordered list is one linear pass in C, cheaper than a Python loop.
    if times == sorted(times):
        # Time-ordered batch (the usual case): the last occurrence is the newest,
        # and dict() keeps the last occurrence without a Python-level comparison.
        newest = dict(zip(samples.signal_ids, pairs, strict=True))
    else:
        newest = {}
        for sid, pair in zip(samples.signal_ids, pairs, strict=True):
            current = newest.get(sid)
            if current is None or pair[0] >= current[0]:
                newest[sid] = pair
    return sorted(newest.items())
