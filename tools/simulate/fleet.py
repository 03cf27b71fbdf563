"""Virtual vehicles made from a real recording, decoded once by the agent's own pipeline.

:func:`load_recording` runs a log through the agent's pipeline (its decoder,
the default plan and a given consent, its batcher) exactly once and keeps the
batches. A :class:`VehicleFeed` is one vehicle's endless stream of those
batches: it starts at its own batch of the recording (vehicles do not all
brake at the same moment), its times are moved so that its first batch is
"now" and every lap of the recording follows the last one without a gap, and
each numeric signal may be scaled by a factor of its own (``jitter``, seeded,
so a run can be repeated). Sequence numbers start at 1 and grow by one per
batch, as an agent's outbox numbers them.

Signals with choices (enumerations) are never scaled: their values are codes.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vehicle_agent import wire
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.catalog import Catalog, DbcSpec
from vehicle_agent.consent import Consent, Purpose
from vehicle_agent.decoding import Decoder
from vehicle_agent.pipeline import Pipeline, frames_of
from vehicle_agent.plan import compile_plan, default_plan
from vehicle_agent.sources import LogSource

__all__ = [
    "FULL_CONSENT",
    "BatchColumns",
    "Recording",
    "SimulationError",
    "VehicleFeed",
    "load_recording",
]

#: Every purpose consented: a simulated fleet sends what its recordings hold.
FULL_CONSENT = Consent(1, frozenset(Purpose))
#: Batches close by size only: a recording is read far faster than real time.
_NEVER = 1e12


class SimulationError(Exception):
    """A simulation cannot run as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class BatchColumns:
    index: npt.NDArray[np.uint32]
    offset_us: npt.NDArray[np.int64]  # from the recording's first sample
    value: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording decoded once: its catalog and its batches' columns."""

    catalog: Catalog
    batches: tuple[BatchColumns, ...]
    #: Microseconds from the first sample to one batch-interval past the last:
    #: how far each lap moves the next one.
    span_us: int
    frames: int

    @property
    def samples(self) -> int:
        return sum(len(b.value) for b in self.batches)

    def hello(self, vehicle_id: str) -> bytes:
        """The serialized hello a vehicle of this recording opens its stream with."""
        return wire.hello(vehicle_id, "telehub-simulate", self.catalog, 0).SerializeToString()


def load_recording(
    log: Path,
    specs: Sequence[DbcSpec],
    *,
    batch_samples: int = 5_000,
    consent: Consent = FULL_CONSENT,
) -> Recording:
    """Decode *log* with *specs* through the agent's pipeline into batches of *batch_samples*."""
    if batch_samples < 1:
        raise SimulationError(f"batch size must be at least 1 sample, got {batch_samples}")
    decoder = Decoder(specs)
    catalog = decoder.catalog
    plan = compile_plan(default_plan(catalog), catalog)
    pipeline = Pipeline(
        decoder,
        Batcher(catalog.catalog_id, max_samples=batch_samples, max_age=_NEVER),
        plan,
        consent,
    )
    with LogSource(log) as source:
        batches = [b for b in frames_of(pipeline, source) if len(b)]
        frames = pipeline.frames
    if not batches:
        raise SimulationError(f"{log.name}: no frame decodes with the DBC files given")
    start = min(min(b.timestamp_us) for b in batches)
    end = max(max(b.timestamp_us) for b in batches)
    columns = tuple(_columns(b, start) for b in batches)
    # One lap follows the last with the recording's mean gap between batches.
    gap = max((end - start) // len(batches), 1)
    return Recording(catalog, columns, end - start + gap, frames)


def _columns(batch: Batch, start: int) -> BatchColumns:
    return BatchColumns(
        np.frombuffer(batch.signal_index, dtype=np.uint32),
        np.frombuffer(batch.timestamp_us, dtype=np.int64) - start,
        np.frombuffer(batch.value, dtype=np.float64),
    )


class VehicleFeed:
    """One virtual vehicle's batches, endless, numbered from 1."""

    def __init__(
        self,
        recording: Recording,
        *,
        start_us: int,
        phase: int = 0,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        if jitter < 0:
            raise SimulationError(f"jitter must not be negative, got {jitter}")
        self._recording = recording
        self._next = phase % len(recording.batches)
        first = recording.batches[self._next]
        # Times so that the first batch sent starts at start_us.
        self._shift = start_us - int(first.offset_us.min())
        self.sequence = 0
        self._scale: npt.NDArray[np.float64] | None = None
        if jitter > 0:
            rng = random.Random(seed)
            scale = [
                1.0 if spec.choices else 1.0 + rng.gauss(0.0, jitter)
                for spec in recording.catalog.signals
            ]
            self._scale = np.array(scale, dtype=np.float64)

    def next_batch(self) -> tuple[int, int, bytes]:
        """The next batch: its sequence, its sample count and the serialized message."""
        recording = self._recording
        columns = recording.batches[self._next]
        self._next += 1
        if self._next == len(recording.batches):
            self._next = 0
        self.sequence += 1
        values = columns.value
        if self._scale is not None:
            values = values * self._scale[columns.index]
        batch = Batch(
            catalog_id=recording.catalog.catalog_id,
            signal_index=array("I", columns.index.tobytes()),
            timestamp_us=array("q", (columns.offset_us + self._shift).tobytes()),
            value=array("d", values.tobytes()),
            sequence=self.sequence,
        )
        if self._next == 0:  # the lap ends: the next one follows it in time
            self._shift += recording.span_us
        return self.sequence, len(values), wire.telemetry_bytes(batch)
