"""Plain values shared by the gateway and the store.

Nothing here knows about protobuf, gRPC or SQLAlchemy: the edges translate
their types into these and back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "AGENT_DEFAULT_PURPOSES",
    "CatalogMap",
    "Consent",
    "DecodedBatch",
    "Eviction",
    "FaultCode",
    "FaultEntry",
    "FaultState",
    "HealthReport",
    "IngestResult",
    "LatestValue",
    "PlanReport",
    "Purpose",
    "SampleColumns",
    "SignalDef",
    "SignalStats",
    "StoredEviction",
    "StoredPlan",
    "StoredTrigger",
    "TriggerMark",
    "VehicleControlStatus",
    "VehicleIdentity",
    "newest_per_signal",
]


class Purpose(StrEnum):
    """Why a signal is collected; a signal leaves the car only while consent covers it."""

    DIAGNOSTICS = "diagnostics"
    AFTER_SALES = "after_sales"
    LOCATION = "location"
    RECOMMENDATIONS = "recommendations"
    ANALYTICS = "analytics"


#: The consent a car enforces before it ever received one (consent version 0):
#: every purpose but location. The wire contract fixes this on the car's side.
AGENT_DEFAULT_PURPOSES: frozenset[Purpose] = frozenset(Purpose) - {Purpose.LOCATION}


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
class Eviction:
    """Samples of one signal the car's outbox had to evict (store-side signal id)."""

    signal_id: int
    samples: int
    first_ts_us: int
    last_ts_us: int


@dataclass(frozen=True, slots=True)
class TriggerMark:
    """A condition-triggered capture that fired, at the CAN time its condition became true."""

    name: str
    ts_us: int
    plan_version: int


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A validated batch: its samples and what rides along with them."""

    samples: SampleColumns
    evictions: Sequence[Eviction] = ()
    triggers: Sequence[TriggerMark] = ()

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True, slots=True)
class StoredEviction:
    """An eviction as stored, with its batch and its signal by name."""

    sequence: int
    bus: str
    message: str
    signal: str
    samples: int
    first_ts_us: int
    last_ts_us: int


@dataclass(frozen=True, slots=True)
class StoredTrigger:
    """A trigger firing as stored, with the batch it came with."""

    sequence: int
    name: str
    ts_us: int
    plan_version: int


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


class FaultState(StrEnum):
    """What a fault-code report says happened to a code."""

    SET = "set"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class FaultCode:
    """One fault code set or cleared on one ECU, at the CAN time of the frame that said so.

    ``protocol`` is ``"j1939_dm1"``, ``"uds"``, or ``"protocol_<n>"`` for a
    protocol a newer agent knows and this cloud does not.
    """

    protocol: str
    bus: str
    source: int
    code: str
    state: FaultState
    ts_us: int
    spn: int = 0
    fmi: int = 0
    occurrences: int = 0
    dtc: int = 0
    status: int = 0


@dataclass(frozen=True, slots=True)
class FaultEntry:
    """A stored fault code with the report that carried it."""

    fault: FaultCode
    report_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The agent's counters at one moment (uint64 counters saturate at 2**63-1)."""

    time_us: int
    uptime_ms: int = 0
    frames_by_bus: Mapping[str, int] = field(default_factory=dict)
    decode_errors: int = 0
    unknown_ids: int = 0
    outbox_batches: int = 0
    outbox_bytes: int = 0
    evicted_samples: int = 0
    reconnects: int = 0
    ack_latency_p50_ms: float = 0.0
    ack_latency_p99_ms: float = 0.0
    plan_version: int = 0
    consent_version: int = 0
    counters: Mapping[str, int] = field(default_factory=dict)
    #: When the cloud stored it; ``None`` before that.
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What the car said about its plan: the version it runs, and the last one it refused.

    ``state`` is ``"active"``, ``"rejected"`` or ``"unspecified"``.
    """

    running_version: int
    state: str
    rejected_version: int = 0
    reason: str = ""
    consent_version: int = 0
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """One version of a vehicle's collection plan, as the engineer wrote it (normalised)."""

    version: int
    name: str
    document: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Consent:
    """The owner's consent, per purpose. Version 0 is the tenant's default (never stored)."""

    version: int
    purposes: frozenset[Purpose]
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VehicleControlStatus:
    """What the cloud wants a vehicle to run, and what the vehicle says it runs."""

    vehicle_id: str
    plan: StoredPlan | None
    reported: PlanReport | None
    consent: Consent


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
