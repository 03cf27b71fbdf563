"""The reader's pipeline on recorded data: plans, consent and triggers as batches see them."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from vehicle_agent.app import diagnostics_for
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.consent import DEFAULT_CONSENT, Consent, Purpose
from vehicle_agent.decoding import Decoder
from vehicle_agent.frames import Frame
from vehicle_agent.pipeline import Pipeline, change_only_signals, frames_of
from vehicle_agent.plan import (
    Plan,
    SamplingMode,
    SignalRef,
    SignalRule,
    TriggerRule,
    compile_plan,
    default_plan,
)
from vehicle_agent.sources import LogSource

ROOT = Path(__file__).resolve().parents[2]
DRIVE_DBC = ROOT / "tools" / "demo_data" / "drive-gnss" / "canmod-gps.dbc"
TP_DIR = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"


def _pipeline(decoder: Decoder, plan: Plan, consent: Consent = DEFAULT_CONSENT) -> Pipeline:
    compiled = compile_plan(plan, decoder.catalog)
    batcher = Batcher(decoder.catalog.catalog_id, max_samples=500, max_age=3600)
    return Pipeline(decoder, batcher, compiled, consent)


def _samples(batches: list[Batch]) -> list[tuple[int, int, float]]:
    return [
        (i, t, v)
        for b in batches
        for i, t, v in zip(b.signal_index, b.timestamp_us, b.value, strict=True)
    ]


@pytest.fixture(scope="module")
def frames(drive_frames: list[Frame]) -> list[Frame]:
    return drive_frames[:30_000]


def test_default_plan_sends_every_decoded_sample(frames: list[Frame]) -> None:
    reference = Decoder([DbcSpec(DRIVE_DBC)])
    expected = [
        (i, round(f.timestamp * 1e6), float(v)) for f in frames for i, v in reference.decode(f)
    ]
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    batches = frames_of(_pipeline(decoder, default_plan(decoder.catalog)), frames)
    assert _samples(batches) == expected
    assert batches[-1].position == len(frames) - 1
    assert all(len(b) <= 500 for b in batches)


def test_passthrough_gives_the_same_batches_as_the_collector(frames: list[Frame]) -> None:
    # The default plan skips the collector; forcing it back must change nothing,
    # neither the batches (with their positions) nor the collector's counts.
    runs = []
    for passthrough in (True, False):
        decoder = Decoder([DbcSpec(DRIVE_DBC)])
        pipeline = _pipeline(decoder, default_plan(decoder.catalog))
        assert pipeline.collector.passthrough
        pipeline.collector._passthrough = passthrough
        batches = frames_of(pipeline, frames)
        runs.append(
            (
                [(b.position, len(b)) for b in batches],
                _samples(batches),
                dataclasses.replace(pipeline.collector.stats),
            )
        )
    assert runs[0] == runs[1]


def test_a_plan_with_a_policy_or_a_withheld_purpose_is_not_passthrough() -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    on_change = Plan(1, "change", (SignalRule(SignalRef("Speed"), mode=SamplingMode.ON_CHANGE),))
    assert not _pipeline(decoder, on_change).collector.passthrough
    location = default_plan(decoder.catalog, Purpose.LOCATION)
    assert not _pipeline(decoder, location).collector.passthrough


def test_a_plan_decodes_only_what_it_needs_and_sends_only_its_signals(
    frames: list[Frame],
) -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    speed = decoder.catalog.index_of("can", "gnss_speed", "Speed")
    plan = Plan(1, "speed only", (SignalRule(SignalRef("Speed")),))
    batches = frames_of(_pipeline(decoder, plan), frames)
    sent = _samples(batches)
    assert sent
    assert {i for i, _, _ in sent} == {speed}
    speed_frames = sum(1 for f in frames if f.arbitration_id == 7)
    assert len(sent) == speed_frames
    # Every other known message was matched but not decoded.
    assert decoder.stats.not_selected == len(frames) - speed_frames - decoder.stats.unknown_id


def test_change_only_signals_skip_repeated_payloads_with_the_same_result(
    frames: list[Frame],
) -> None:
    rule = SignalRule(SignalRef("Satellites"), mode=SamplingMode.ON_CHANGE)
    plan = Plan(1, "satellites on change", (rule,))
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    compiled = compile_plan(plan, decoder.catalog)
    assert change_only_signals(compiled) == {
        decoder.catalog.index_of("can", "gnss_status", "Satellites")
    }
    fast = _samples(frames_of(_pipeline(decoder, plan), frames))
    # The same plan without the repeat skip (a heartbeat far beyond the recording
    # disables it) must send exactly the same samples.
    slow_rule = SignalRule(SignalRef("Satellites"), mode=SamplingMode.ON_CHANGE, heartbeat_ms=10**9)
    slow_decoder = Decoder([DbcSpec(DRIVE_DBC)])
    slow = _samples(frames_of(_pipeline(slow_decoder, Plan(1, "slow", (slow_rule,))), frames))
    assert fast == slow
    assert decoder.stats.unchanged > 0
    assert slow_decoder.stats.unchanged == 0
    values = [v for _, _, v in fast]
    assert all(a != b for a, b in itertools.pairwise(values))


def test_a_new_plan_takes_over_between_two_frames(frames: list[Frame]) -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    catalog = decoder.catalog
    pipeline = _pipeline(decoder, Plan(1, "speed", (SignalRule(SignalRef("Speed")),)))
    half = len(frames) // 2
    batches: list[Batch] = []
    for position, frame in enumerate(frames[:half]):
        batches.extend(pipeline.process(frame, position))
    done = pipeline.request_plan(
        compile_plan(Plan(2, "altitude", (SignalRule(SignalRef("Altitude")),)), catalog)
    )
    assert not done.done()
    for position, frame in enumerate(frames[half:], start=half):
        batches.extend(pipeline.process(frame, position))
    assert done.done()
    last = pipeline.flush()
    assert last is not None
    batches.append(last)
    speed = catalog.index_of("can", "gnss_speed", "Speed")
    altitude = catalog.index_of("can", "gnss_altitude", "Altitude")
    switch_us = round(frames[half].timestamp * 1e6)
    sent = _samples(batches)
    assert {i for i, t, _ in sent if t < switch_us} == {speed}
    assert {i for i, t, _ in sent if t > switch_us} == {altitude}


def test_withdrawn_consent_takes_effect_on_the_open_batch(frames: list[Frame]) -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    plan = Plan(
        1,
        "two purposes",
        (
            SignalRule(SignalRef("Speed"), purpose=Purpose.ANALYTICS),
            SignalRule(SignalRef("Satellites"), purpose=Purpose.DIAGNOSTICS),
        ),
    )
    pipeline = _pipeline(decoder, plan)
    for position, frame in enumerate(frames[:2000]):
        assert pipeline.process(frame, position) == []  # the batch (500) is not full yet
    assert pipeline.batcher.pending > 0
    done = pipeline.request_consent(Consent(1, frozenset({Purpose.DIAGNOSTICS})))
    pipeline.apply_pending()
    assert done.done()
    last = pipeline.flush()
    assert last is not None
    satellites = decoder.catalog.index_of("can", "gnss_status", "Satellites")
    assert set(last.signal_index) == {satellites}


def test_trigger_marks_ride_on_the_batch_that_closes_after_them(frames: list[Frame]) -> None:
    decoder = Decoder([DbcSpec(DRIVE_DBC)])
    trigger = TriggerRule(
        "moving", "Speed > 1", pre_ms=500, post_ms=500, capture=(SignalRef("Speed"),)
    )
    pipeline = _pipeline(decoder, Plan(1, "trigger", (), (trigger,)))
    batches = frames_of(pipeline, frames)
    marks = [m for b in batches for m in b.triggers]
    assert marks, "the drive goes above 1 m/s"
    assert all(m.name == "moving" and m.plan_version == 1 for m in marks)
    first = marks[0].time_us
    sent = [t for _, t, _ in _samples(batches)]
    assert min(sent) >= first - 500_000


def test_transport_messages_reach_the_decoder_through_the_pipeline() -> None:
    decoder = Decoder([DbcSpec(TP_DIR / "tp_uds.dbc")])
    tap = diagnostics_for(decoder)
    plan = default_plan(decoder.catalog)
    pipeline = Pipeline(
        decoder,
        Batcher(decoder.catalog.catalog_id, max_samples=1000, max_age=3600),
        compile_plan(plan, decoder.catalog),
        DEFAULT_CONSENT,
        diagnostics=tap,
    )
    with LogSource(TP_DIR / "uds_isotp.MF4") as source:
        batches = frames_of(pipeline, source)
    soc = decoder.catalog.index_of("can", "Battery", "M_SID_0x220101_StateOfChargeBMS")
    values = [v for i, _, v in _samples(batches) if i == soc]
    assert len(values) == 120
    assert all(0 <= v <= 100 for v in values)
    assert decoder.stats.decode_errors == 0
