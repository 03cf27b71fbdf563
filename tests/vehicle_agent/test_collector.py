"""The collector on the bundled 545 s drive: policies, triggers, captures and consent.

Every expectation is computed here from the decoded recording, independently of
the collector, and compared exactly.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vehicle_agent.batching import TriggerMark, to_microseconds
from vehicle_agent.catalog import Catalog, DbcSpec
from vehicle_agent.collector import Collector, CollectorStats
from vehicle_agent.consent import DEFAULT_CONSENT, Consent, Purpose
from vehicle_agent.decoding import Decoder
from vehicle_agent.frames import Frame
from vehicle_agent.plan import (
    Plan,
    SamplingMode,
    SignalRef,
    SignalRule,
    TriggerMode,
    TriggerRule,
    compile_plan,
)

Out = list[tuple[int, int, float]]
Series = list[tuple[int, float]]


@dataclass(frozen=True)
class Drive:
    catalog: Catalog
    frames: list[tuple[int, list[tuple[int, float]]]]

    def index(self, name: str) -> int:
        (spec,) = [s for s in self.catalog if s.name == name]
        return spec.index

    def series(self, name: str) -> Series:
        i = self.index(name)
        return [(t, v) for t, samples in self.frames for j, v in samples if j == i]


@pytest.fixture(scope="module")
def drive(demo_dir: Path, drive_frames: list[Frame]) -> Drive:
    decoder = Decoder([DbcSpec(demo_dir / "drive-gnss" / "canmod-gps.dbc", bus="gnss")])
    frames = [(to_microseconds(f.timestamp), decoder.decode(f)) for f in drive_frames]
    return Drive(decoder.catalog, [(t, [(i, float(v)) for i, v in s]) for t, s in frames])


def run(collector: Collector, drive: Drive) -> Out:
    out: Out = []
    for timestamp, samples in drive.frames:
        out.extend(collector.process(timestamp, samples))
    check_accounting(collector.stats, len(out))
    return out


def check_accounting(stats: CollectorStats, sent: int) -> None:
    assert stats.samples_out == sent
    assert stats.samples_in == stats.samples_out + stats.unselected + stats.blocked + stats.filtered


def only(out: Out, index: int) -> Series:
    return [(t, v) for i, t, v in out if i == index]


def collector(
    drive: Drive, plan: Plan, consent: Consent = DEFAULT_CONSENT, **kw: float
) -> Collector:
    return compile_plan(plan, drive.catalog, **kw).collector(consent)


def signal(name: str, purpose: Purpose = Purpose.DIAGNOSTICS, **kw: object) -> SignalRule:
    return SignalRule(SignalRef(name), purpose, **kw)  # type: ignore[arg-type]


def edges(series: Series, predicate: object) -> list[int]:
    """CAN times where predicate(value) turns true (true at the first sample counts)."""
    fired, was = [], False
    for t, v in series:
        now = predicate(v)  # type: ignore[operator]
        if now and not was:
            fired.append(t)
        was = now
    return fired


def in_windows(series: Series, fires: Iterable[int], pre_us: int, post_us: int) -> Series:
    fires = list(fires)
    return [(t, v) for t, v in series if any(f - pre_us <= t <= f + post_us for f in fires)]


def test_default_plan_passes_everything_through(drive: Drive) -> None:
    plan = Plan(0, "all", tuple(signal(s.name) for s in drive.catalog))
    c = collector(drive, plan)
    out = run(c, drive)
    expected = [(i, t, v) for t, samples in drive.frames for i, v in samples]
    assert out == expected
    assert c.stats.filtered == c.stats.blocked == c.stats.unselected == 0


def test_unselected_signals_are_counted_not_sent(drive: Drive) -> None:
    c = collector(drive, Plan(1, "speed", (signal("Speed"),)))
    out = run(c, drive)
    assert out == [(drive.index("Speed"), t, v) for t, v in drive.series("Speed")]
    assert c.stats.unselected == c.stats.samples_in - len(out) > 0


@pytest.mark.parametrize(
    ("name", "deadband"), [("Speed", 0.5), ("AccelerationX", 0.3), ("Altitude", 0.0)]
)
def test_on_change_sends_only_moves_beyond_the_deadband(
    drive: Drive, name: str, deadband: float
) -> None:
    raw = drive.series(name)
    plan = Plan(1, "p", (signal(name, mode=SamplingMode.ON_CHANGE, deadband=deadband),))
    sent = only(run(collector(drive, plan), drive), drive.index(name))
    assert sent[0] == raw[0]
    assert len(sent) < len(raw)
    assert all(abs(b[1] - a[1]) > deadband for a, b in itertools.pairwise(sent))
    # Every raw sample that was not sent lies within the deadband of the last one sent.
    sent_times = {t for t, _ in sent}
    last = raw[0][1]
    for t, v in raw:
        if t in sent_times:
            last = v
        else:
            assert abs(v - last) <= deadband


@pytest.mark.parametrize("interval_ms", [250, 1500, 10_000])
def test_min_interval_keeps_the_first_sample_of_each_gap(drive: Drive, interval_ms: int) -> None:
    raw = drive.series("AccelerationY")
    plan = Plan(1, "p", (signal("AccelerationY", min_interval_ms=interval_ms),))
    sent = only(run(collector(drive, plan), drive), drive.index("AccelerationY"))
    expected, last = [], None
    for t, v in raw:
        if last is None or t - last >= interval_ms * 1000:
            expected.append((t, v))
            last = t
    assert sent == expected
    assert all(b[0] - a[0] >= interval_ms * 1000 for a, b in itertools.pairwise(sent))


@pytest.mark.parametrize("heartbeat_ms", [3000, 20_000])
def test_heartbeat_sends_when_nothing_changes(drive: Drive, heartbeat_ms: int) -> None:
    raw = drive.series("Satellites")
    # A deadband no change exceeds: only the heartbeat sends after the first sample.
    rule = signal(
        "Satellites", mode=SamplingMode.ON_CHANGE, deadband=1e9, heartbeat_ms=heartbeat_ms
    )
    sent = only(run(collector(drive, Plan(1, "p", (rule,))), drive), drive.index("Satellites"))
    period = heartbeat_ms * 1000
    assert sent[0] == raw[0]
    for (a, _), (b, _) in itertools.pairwise(sent):
        # b is the first raw sample at least a period after a: no longer gap is possible
        # while the signal keeps arriving.
        assert b - a >= period
        assert not [t for t, _ in raw if a + period <= t < b]
    assert not [t for t, _ in raw if t >= sent[-1][0] + period]


def test_location_is_blocked_by_default_and_coarsened_when_granted(drive: Drive) -> None:
    plan = Plan(1, "p", (signal("Latitude", Purpose.LOCATION), signal("Speed")))
    c = collector(drive, plan, location_quantum=0.01)
    out = run(c, drive)
    lat = drive.index("Latitude")
    assert only(out, lat) == []
    assert c.stats.blocked == len(drive.series("Latitude"))
    granted = Consent(1, frozenset({Purpose.LOCATION}))
    c = collector(drive, plan, granted, location_quantum=0.01)
    out = run(c, drive)
    sent = only(out, lat)
    raw = drive.series("Latitude")
    assert [t for t, _ in sent] == [t for t, _ in raw]
    for (_, value), (_, original) in zip(sent, raw, strict=True):
        assert abs(value / 0.01 - round(value / 0.01)) < 1e-6
        assert abs(value - original) <= 0.005 + 1e-9
    assert len({v for _, v in sent}) < len({v for _, v in raw})
    assert only(out, drive.index("Speed")) == []  # diagnostics is not granted here


def test_consent_withdrawn_and_regranted_takes_effect_at_once(drive: Drive) -> None:
    plan = Plan(1, "p", (signal("Speed", Purpose.ANALYTICS),))
    c = collector(drive, plan)
    start, end = drive.frames[0][0], drive.frames[-1][0]
    off, on = start + (end - start) // 3, start + 2 * (end - start) // 3
    withdrawn = Consent(2, frozenset({Purpose.DIAGNOSTICS}))
    out: Out = []
    for timestamp, samples in drive.frames:
        if timestamp >= off and c.consent.version == 0:
            c.set_consent(withdrawn)
        if timestamp >= on and c.consent.version == 2:
            c.set_consent(Consent(3, frozenset({Purpose.ANALYTICS})))
        out.extend(c.process(timestamp, samples))
    expected = [(t, v) for t, v in drive.series("Speed") if not off <= t < on]
    assert only(out, drive.index("Speed")) == expected
    assert c.stats.blocked == len(drive.series("Speed")) - len(expected) > 0


def speed_trigger(**kw: object) -> TriggerRule:
    fields: dict[str, object] = {"name": "fast", "condition": "Speed > 15"}
    fields.update(kw)
    return TriggerRule(**fields)  # type: ignore[arg-type]


def test_rising_edge_fires_at_the_can_time_of_each_edge(drive: Drive) -> None:
    c = collector(drive, Plan(9, "p", triggers=(speed_trigger(),)))
    assert run(c, drive) == []
    expected = edges(drive.series("Speed"), lambda v: v > 15)
    assert len(expected) >= 2
    assert c.fired == [TriggerMark("fast", t, 9) for t in expected]
    assert c.stats.triggers_fired == len(expected)
    assert c.drain_fired() == [TriggerMark("fast", t, 9) for t in expected]
    assert c.fired == []


def test_always_fires_on_every_true_evaluation(drive: Drive) -> None:
    c = collector(drive, Plan(9, "p", triggers=(speed_trigger(mode=TriggerMode.ALWAYS),)))
    run(c, drive)
    expected = [t for t, v in drive.series("Speed") if v > 15]
    assert [m.time_us for m in c.drain_fired()] == expected
    assert len(expected) > len(edges(drive.series("Speed"), lambda v: v > 15))


def test_min_interval_between_firings(drive: Drive) -> None:
    rule = speed_trigger(mode=TriggerMode.ALWAYS, min_interval_ms=10_000)
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    run(c, drive)
    trues = [t for t, v in drive.series("Speed") if v > 15]
    expected: list[int] = []
    for t in trues:
        if not expected or t - expected[-1] >= 10_000_000:
            expected.append(t)
    assert [m.time_us for m in c.fired] == expected
    assert c.stats.triggers_suppressed == len(trues) - len(expected) > 0


def test_window_condition_fires_like_a_brute_force_average(drive: Drive) -> None:
    rule = TriggerRule("bump", "avg(AccelerationZ, 0.5) > 1.5", min_interval_ms=0)
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    run(c, drive)
    raw = drive.series("AccelerationZ")
    averages: Series = []
    start = 0
    for end, (t, _) in enumerate(raw):
        while raw[start][0] < t - 500_000:
            start += 1
        window = [v for _, v in raw[start : end + 1]]
        averages.append((t, sum(window) / len(window)))
    expected = edges(averages, lambda v: v > 1.5)
    assert expected
    assert [m.time_us for m in c.fired] == expected


def test_capture_sends_exactly_the_pre_and_post_window(drive: Drive) -> None:
    rule = speed_trigger(capture=(SignalRef("AccelerationY"),), pre_ms=1500, post_ms=2500)
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    out = run(c, drive)
    fires = edges(drive.series("Speed"), lambda v: v > 15)
    expected = in_windows(drive.series("AccelerationY"), fires, 1_500_000, 2_500_000)
    assert expected
    assert out == [(drive.index("AccelerationY"), t, v) for t, v in expected]
    assert c.stats.history_dropped == 0


def test_policy_and_overlapping_captures_never_send_a_sample_twice(drive: Drive) -> None:
    accel = drive.index("AccelerationY")
    plan = Plan(
        9,
        "p",
        (signal("AccelerationY", mode=SamplingMode.ON_CHANGE, deadband=0.5),),
        (
            speed_trigger(capture=(SignalRef("AccelerationY"),), pre_ms=4000, post_ms=3000),
            speed_trigger(
                name="faster",
                condition="Speed > 16",
                capture=(SignalRef("AccelerationY"),),
                pre_ms=6000,
                post_ms=1000,
            ),
        ),
    )
    c = collector(drive, plan)
    out = run(c, drive)
    sent = only(out, accel)
    assert len(set(sent)) == len(sent) == len(out)
    policy_only = only(run(collector(drive, Plan(1, "p", plan.signals)), drive), accel)
    raw = drive.series("AccelerationY")
    captured = set(
        in_windows(raw, edges(drive.series("Speed"), lambda v: v > 15), 4_000_000, 3_000_000)
    )
    captured |= set(
        in_windows(raw, edges(drive.series("Speed"), lambda v: v > 16), 6_000_000, 1_000_000)
    )
    assert captured - set(policy_only)
    assert Counter(sent) == Counter(set(policy_only) | captured)


def test_pre_trigger_history_is_bounded_and_drops_are_counted(drive: Drive) -> None:
    rule = speed_trigger(capture=(SignalRef("AccelerationY"),), pre_ms=5000, post_ms=0)
    compiled = compile_plan(Plan(9, "p", triggers=(rule,)), drive.catalog)
    c = Collector(compiled, DEFAULT_CONSENT, history_samples=10)
    out = run(c, drive)
    fires = edges(drive.series("Speed"), lambda v: v > 15)
    raw = drive.series("AccelerationY")
    for fire in fires:
        at_fire = [(t, v) for t, v in raw if fire - 5_000_000 <= t <= fire]
        sent = [(t, v) for i, t, v in out if fire - 5_000_000 <= t <= fire]
        assert sent == at_fire[-10:]  # the newest ten survive
    assert c.stats.history_dropped > 0


def test_trigger_needs_every_signal_and_division_by_zero_is_false(drive: Drive) -> None:
    speed, sats = drive.index("Speed"), drive.index("Satellites")
    rule = TriggerRule("t", "Speed > 15 or Satellites > 100", mode=TriggerMode.ALWAYS)
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    c.process(1_000, [(speed, 20.0)])
    assert c.fired == []  # Satellites has no value yet
    c.process(2_000, [(sats, 5.0)])
    assert [m.time_us for m in c.fired] == [2_000]
    rule = TriggerRule("z", "Speed / Satellites > 1 or Speed > 15", mode=TriggerMode.ALWAYS)
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    c.process(1_000, [(speed, 20.0), (sats, 0.0)])
    c.process(2_000, [(sats, 1.0)])
    assert [m.time_us for m in c.fired] == [2_000]


def test_trigger_without_consent_neither_fires_nor_keeps_history(drive: Drive) -> None:
    rule = speed_trigger(
        capture=(SignalRef("AccelerationY"),), pre_ms=3000, post_ms=1000, purpose=Purpose.LOCATION
    )
    c = collector(drive, Plan(9, "p", triggers=(rule,)))
    fires = edges(drive.series("Speed"), lambda v: v > 15)
    grant_at = (fires[0] + fires[1]) // 2
    out: Out = []
    for timestamp, samples in drive.frames:
        if timestamp >= grant_at and not c.consent.allows(Purpose.LOCATION):
            c.set_consent(Consent(1, frozenset({Purpose.LOCATION})))
        out.extend(c.process(timestamp, samples))
    later = [f for f in fires if f >= grant_at]
    assert [m.time_us for m in c.fired] == later
    raw = drive.series("AccelerationY")
    expected = [(t, v) for t, v in in_windows(raw, later, 3_000_000, 1_000_000) if t >= grant_at]
    assert only(out, drive.index("AccelerationY")) == expected
