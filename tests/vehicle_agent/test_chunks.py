"""A log replay decoded a chunk at a time gives exactly what the per-frame path gives.

Each case replays a bundled recording twice through a fresh pipeline: frame by
frame (:meth:`Pipeline.process`) and chunk by chunk
(:meth:`Pipeline.process_chunk`), with the diagnostics tap on. The batches
(boundaries, positions, priorities, samples), the decoder's, collector's and
tap's counters and the fault changes must be equal. Small chunks and batches put
many boundaries in the recordings.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import can
import pytest

from vehicle_agent.app import diagnostics_for
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.consent import DEFAULT_CONSENT
from vehicle_agent.decoding import Decoder
from vehicle_agent.frames import Frame
from vehicle_agent.logs.columns import columns_from_messages
from vehicle_agent.pipeline import Pipeline
from vehicle_agent.plan import (
    Plan,
    SamplingMode,
    SignalRef,
    SignalRule,
    compile_plan,
    default_plan,
)
from vehicle_agent.sources import LogSource

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tools" / "demo_data"
TP_DIR = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"
DRIVE = DEMO / "drive-gnss"
TRUCK = DEMO / "truck-j1939"

CASES: dict[str, tuple[Path, tuple[DbcSpec, ...]]] = {
    "drive": (DRIVE / "drive_545s.MF4", (DbcSpec(DRIVE / "canmod-gps.dbc", bus="gnss"),)),
    "truck": (
        TRUCK / "truck_idle_127s.MF4",
        (
            DbcSpec(TRUCK / "CSS-Electronics-SAE-J1939-DEMO.dbc", bus="j1939", channel="1"),
            DbcSpec(TRUCK / "canmod-gps.dbc", bus="gnss", channel="2"),
        ),
    ),
    "j1939-tp": (TP_DIR / "j1939_tp.MF4", (DbcSpec(TP_DIR / "tp_j1939.dbc", j1939=True),)),
    "uds-isotp": (TP_DIR / "uds_isotp.MF4", (DbcSpec(TP_DIR / "tp_uds.dbc"),)),
}

PlanFor = Callable[[Decoder], Plan]


def _run(
    case: str, plan_for: PlanFor, *, chunked: bool, max_samples: int
) -> tuple[list[tuple[object, ...]], dict[str, object], int]:
    log, specs = CASES[case]
    decoder = Decoder(specs)
    tap = diagnostics_for(decoder)
    batcher = Batcher(decoder.catalog.catalog_id, max_samples=max_samples, max_age=3600)
    compiled = compile_plan(plan_for(decoder), decoder.catalog)
    pipeline = Pipeline(decoder, batcher, compiled, DEFAULT_CONSENT, diagnostics=tap)
    one_by_one = 0
    single = pipeline._one

    def counted(frame: Frame, position: int) -> list[Batch]:
        nonlocal one_by_one
        one_by_one += 1
        return single(frame, position)

    pipeline._one = counted  # type: ignore[method-assign]
    batches: list[Batch] = []
    with LogSource(log, chunk_frames=1_000) as source:
        chunks = source.chunks() if chunked else None
        if chunks is None:
            assert not chunked
            for position, frame in enumerate(source):
                batches += pipeline.process(frame, position)
        else:
            first = 0
            for chunk in chunks:
                batches += pipeline.process_chunk(chunk, first)
                first += len(chunk)
    last = pipeline.flush()
    batches += [last] if last is not None else []
    counters = {
        "decoder": asdict(decoder.stats),
        "collector": pipeline.collector.stats,
        "tap": asdict(tap.stats),
        "faults": tap.drain_changes(),
        "frames": pipeline.frames,
    }
    return [_batch(b) for b in batches], counters, one_by_one


def _batch(batch: Batch) -> tuple[object, ...]:
    # Within one frame, a multiplexed message's samples may come in another
    # order (see vehicle_agent.chunks): compare each batch's samples as a set.
    samples = sorted(
        (t, i, struct.pack("<d", v))
        for i, t, v in zip(batch.signal_index, batch.timestamp_us, batch.value, strict=True)
    )
    return (len(batch), batch.position, batch.priority, batch.triggers, samples)


def _every_signal(decoder: Decoder) -> Plan:
    return default_plan(decoder.catalog)


def _some_signals(decoder: Decoder) -> Plan:
    """Every other catalog signal: some messages not decoded at all."""
    rules = tuple(
        SignalRule(SignalRef(s.name, s.message, s.bus)) for s in list(decoder.catalog)[::2]
    )
    return Plan(version=2, name="some", signals=rules)


def _on_change(decoder: Decoder) -> Plan:
    """Every signal on change: repeats skipped, a policy to apply (frame by frame)."""
    rules = tuple(
        SignalRule(SignalRef(s.name, s.message, s.bus), mode=SamplingMode.ON_CHANGE)
        for s in decoder.catalog
    )
    return Plan(version=3, name="changes", signals=rules)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("max_samples", [7, 5_000])
def test_chunks_give_the_per_frame_batches_and_counts(case: str, max_samples: int) -> None:
    by_frame, counted, _ = _run(case, _every_signal, chunked=False, max_samples=max_samples)
    by_chunk, chunk_counted, _ = _run(case, _every_signal, chunked=True, max_samples=max_samples)
    assert len(by_chunk) == len(by_frame)
    assert by_chunk == by_frame
    assert chunk_counted == counted


def test_only_the_transport_frames_go_one_by_one() -> None:
    _, counted, one_by_one = _run("drive", _every_signal, chunked=True, max_samples=5_000)
    assert one_by_one == 0
    # The truck's DM1 and transport frames, and the short runs between them.
    _, counted, one_by_one = _run("truck", _every_signal, chunked=True, max_samples=5_000)
    assert 0 < one_by_one < counted["frames"] // 10  # type: ignore[operator]
    _, counted, one_by_one = _run("uds-isotp", _every_signal, chunked=True, max_samples=5_000)
    assert one_by_one > 0


@pytest.mark.parametrize("plan_for", [_some_signals, _on_change])
def test_a_plan_subset_or_with_policies_gives_the_same_batches(plan_for: PlanFor) -> None:
    by_frame, counted, _ = _run("truck", plan_for, chunked=False, max_samples=300)
    by_chunk, chunk_counted, _ = _run("truck", plan_for, chunked=True, max_samples=300)
    assert by_chunk == by_frame
    assert chunk_counted == counted
    assert sum(n for n, *_ in by_frame) > 0  # type: ignore[misc]


def test_one_file_on_two_buses_goes_frame_by_frame() -> None:
    dbc = TRUCK / "CSS-Electronics-SAE-J1939-DEMO.dbc"
    decoder = Decoder(
        [
            DbcSpec(dbc, bus="j1939", channel="1", j1939=True),
            DbcSpec(dbc, bus="other", channel="2", j1939=True),
        ]
    )
    compiled = compile_plan(default_plan(decoder.catalog), decoder.catalog)
    batcher = Batcher(decoder.catalog.catalog_id, max_samples=500, max_age=3600)
    pipeline = Pipeline(decoder, batcher, compiled, DEFAULT_CONSENT)
    with LogSource(TRUCK / "truck_idle_127s.MF4", chunk_frames=1_000) as source:
        chunks = source.chunks()
        assert chunks is not None
        chunk = next(chunks)
        batches = pipeline.process_chunk(chunk, 0)
    assert pipeline._chunks is not None
    assert not pipeline._chunks.available
    assert pipeline.frames == len(chunk) == 1_000
    assert decoder.stats.frames == 1_000
    assert sum(map(len, batches)) + batcher.pending == decoder.stats.samples > 0


def test_fault_expiry_runs_at_the_same_can_time_inside_a_vectorised_run() -> None:
    # One DM1 with an active code, then only plain engine frames: the code must
    # clear by timeout at the first plain frame past the expiry, in a run of
    # frames the tap never sees one by one.
    dm1 = bytes([0x04, 0xFF]) + (520 | 3 << 16 | 1 << 24).to_bytes(4, "little") + b"\xff\xff"
    messages = [can.Message(timestamp=10.0, arbitration_id=0x18FECA03, data=dm1, channel="1")]
    messages += [
        can.Message(
            timestamp=10.0 + 0.05 * k, arbitration_id=0x0CF00400, data=bytes(8), channel="1"
        )
        for k in range(1, 600)
    ]
    specs = (DbcSpec(TRUCK / "CSS-Electronics-SAE-J1939-DEMO.dbc", bus="j1939", j1939=True),)
    changes = []
    for chunked in (False, True):
        decoder = Decoder(specs)
        tap = diagnostics_for(decoder)
        batcher = Batcher(decoder.catalog.catalog_id, max_samples=500, max_age=3600)
        compiled = compile_plan(default_plan(decoder.catalog), decoder.catalog)
        pipeline = Pipeline(decoder, batcher, compiled, DEFAULT_CONSENT, diagnostics=tap)
        first = 0
        for chunk in columns_from_messages(messages, chunk_frames=256):
            if chunked:
                pipeline.process_chunk(chunk, first)
            else:
                for row, frame in enumerate(chunk.frames()):
                    pipeline.process(frame, first + row)
            first += len(chunk)
        changes.append([(c.code, c.state, c.time_us) for c in tap.drain_changes()])
    assert changes[1] == changes[0]
    assert [state for _, state, _ in changes[0]] == ["set", "cleared"]
    cleared_us = changes[0][1][2]
    assert cleared_us > 10_000_000
    assert cleared_us % 50_000 == 0  # a frame's time, not the chunk's
