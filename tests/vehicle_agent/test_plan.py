"""Compiling collection plans against a catalog: resolution, derived maps, rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from vehicle_agent.catalog import Catalog, DbcSpec
from vehicle_agent.consent import Purpose
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import AgentError, PlanError
from vehicle_agent.plan import (
    MAX_CAPTURE_MS,
    MAX_TRIGGERS,
    Plan,
    SamplingMode,
    SignalRef,
    SignalRule,
    TriggerMode,
    TriggerRule,
    compile_plan,
    default_plan,
)

ROOT = Path(__file__).resolve().parents[2]
DRIVE_DBC = ROOT / "tools" / "demo_data" / "drive-gnss" / "canmod-gps.dbc"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Decoder([DbcSpec(DRIVE_DBC, bus="gnss")]).catalog


@pytest.fixture(scope="module")
def two_buses() -> Catalog:
    # The same DBC on two buses: every bare signal name is then ambiguous.
    return Decoder([DbcSpec(DRIVE_DBC, bus="front"), DbcSpec(DRIVE_DBC, bus="rear")]).catalog


def test_default_plan_sends_every_signal_for_one_purpose(catalog: Catalog) -> None:
    plan = default_plan(catalog, Purpose.ANALYTICS)
    assert plan.version == 0
    assert len(plan.signals) == len(catalog)
    compiled = compile_plan(plan, catalog)
    assert compiled.needed == frozenset(range(len(catalog)))
    assert set(compiled.purpose_of.values()) == {Purpose.ANALYTICS}
    assert all(r.mode is SamplingMode.EVERY for r in plan.signals)
    assert compiled.signals_for([Purpose.ANALYTICS]) == compiled.needed
    assert compiled.signals_for([Purpose.LOCATION]) == frozenset()


def test_names_resolve_bare_qualified_and_by_bus(catalog: Catalog, two_buses: Catalog) -> None:
    speed = catalog.index_of("gnss", "gnss_speed", "Speed")
    for ref in (
        SignalRef("Speed"),
        SignalRef("Speed", "gnss_speed"),
        SignalRef("Speed", "gnss_speed", "gnss"),
        SignalRef("Speed", bus="gnss"),
    ):
        compiled = compile_plan(Plan(1, "p", (SignalRule(ref),)), catalog)
        assert compiled.needed == {speed}, ref
    rear = two_buses.index_of("rear", "gnss_speed", "Speed")
    compiled = compile_plan(Plan(1, "p", (SignalRule(SignalRef("Speed", bus="rear")),)), two_buses)
    assert compiled.needed == {rear}


def test_ambiguous_and_unknown_names_list_the_candidates(two_buses: Catalog) -> None:
    with pytest.raises(PlanError) as info:
        compile_plan(Plan(4, "p", (SignalRule(SignalRef("Speed")),)), two_buses)
    message = str(info.value)
    assert message.startswith("plan 4 rejected: signal #0 (Speed): signal 'Speed' is ambiguous")
    assert "front.gnss_speed.Speed" in message
    assert "rear.gnss_speed.Speed" in message
    with pytest.raises(PlanError, match="did you mean 'Speed'"):
        compile_plan(Plan(4, "p", (SignalRule(SignalRef("Sped")),)), two_buses)
    with pytest.raises(PlanError, match=r"signals named 'Speed': front\.gnss_speed\.Speed"):
        compile_plan(Plan(4, "p", (SignalRule(SignalRef("Speed", bus="middle")),)), two_buses)
    trigger = TriggerRule("t", "front.gnss_speed.Speed > 1 and Latitude > 2")
    with pytest.raises(PlanError, match="trigger 't': condition: signal 'Latitude' is ambiguous"):
        compile_plan(Plan(4, "p", triggers=(trigger,)), two_buses)


def test_needed_purposes_and_priorities_cover_triggers(catalog: Catalog) -> None:
    index = {s.name: s.index for s in catalog}
    plan = Plan(
        7,
        "p",
        signals=(
            SignalRule(SignalRef("Latitude"), Purpose.LOCATION, priority=2),
            SignalRule(SignalRef("Speed"), Purpose.DIAGNOSTICS, priority=1),
        ),
        triggers=(
            TriggerRule(
                "hard",
                "avg(AccelerationX, 1) < -3 and Satellites > 4",
                capture=(SignalRef("Speed"), SignalRef("AccelerationY")),
                purpose=Purpose.DIAGNOSTICS,
                priority=5,
            ),
            TriggerRule(
                "where",
                "Speed > 30",
                capture=(SignalRef("Latitude"),),
                priority=1,
                purpose=Purpose.LOCATION,
            ),
        ),
    )
    compiled = compile_plan(plan, catalog, location_quantum=0.01)
    sent = {index[n] for n in ("Latitude", "Speed", "AccelerationY")}
    assert compiled.needed == sent | {index["AccelerationX"], index["Satellites"]}
    assert set(compiled.purpose_of) == sent
    assert compiled.purpose_of[index["AccelerationY"]] is Purpose.DIAGNOSTICS
    assert compiled.priority_of == {
        index["Latitude"]: 2,
        index["Speed"]: 5,
        index["AccelerationY"]: 5,
    }
    assert compiled.signals_for([Purpose.LOCATION]) == {index["Latitude"]}
    assert compiled.signals[index["Latitude"]].quantum == 0.01
    assert compiled.signals[index["AccelerationY"]].rule is None
    assert compiled.triggers[0].inputs == (index["AccelerationX"], index["Satellites"])


def test_location_quantum_is_a_floor_only_for_location(catalog: Catalog) -> None:
    plan = Plan(
        1,
        "p",
        (
            SignalRule(SignalRef("Latitude"), Purpose.LOCATION, quantum=0.1),
            SignalRule(SignalRef("Longitude"), Purpose.LOCATION, quantum=0.001),
            SignalRule(SignalRef("Speed"), Purpose.DIAGNOSTICS, quantum=0.001),
        ),
    )
    compiled = compile_plan(plan, catalog, location_quantum=0.01)
    quanta = {catalog[i].name: s.quantum for i, s in compiled.signals.items()}
    assert quanta == {"Latitude": 0.1, "Longitude": 0.01, "Speed": 0.001}
    with pytest.raises(ValueError, match="location_quantum"):
        compile_plan(plan, catalog, location_quantum=-1.0)


def rule(**kw: object) -> SignalRule:
    return SignalRule(SignalRef("Speed"), **kw)  # type: ignore[arg-type]


def trig(**kw: object) -> TriggerRule:
    fields: dict[str, object] = {"name": "t", "condition": "Speed > 1"}
    fields.update(kw)
    return TriggerRule(**fields)  # type: ignore[arg-type]


BAD: list[tuple[str, Plan, str]] = [
    ("version", Plan(-1, "p"), "plan -1 rejected: version must not be negative"),
    (
        "twice",
        Plan(1, "p", (rule(), rule(purpose=Purpose.ANALYTICS))),
        "signal #1 (Speed): gnss.gnss_speed.Speed is already listed as signal #0",
    ),
    ("deadband", Plan(1, "p", (rule(deadband=-0.5),)), "deadband must not be negative, got -0.5"),
    ("nan", Plan(1, "p", (rule(quantum=float("nan")),)), "quantum must be finite, got nan"),
    ("interval", Plan(1, "p", (rule(min_interval_ms=-1),)), "min_interval_ms must not be negative"),
    ("float", Plan(1, "p", (rule(heartbeat_ms=1.5),)), "heartbeat_ms must be a whole number"),
    (
        "uint32",
        Plan(1, "p", (rule(priority=2**32),)),
        "priority is 4294967296, more than the limit",
    ),
    (
        "mode",
        Plan(1, "p", (rule(mode="sometimes"),)),
        "mode 'sometimes' is not one of every, on_change",
    ),
    ("purpose", Plan(1, "p", (rule(purpose="ads"),)), "purpose 'ads' is not one of diagnostics"),
    ("empty", Plan(1, "p", (SignalRule(SignalRef("")),)), "signal #0 (): the signal name is empty"),
    (
        "unknown",
        Plan(1, "p", (SignalRule(SignalRef("Speed", "gnss_imu")),)),
        "unknown signal 'gnss_imu.Speed'; signals named 'Speed': gnss.gnss_speed.Speed",
    ),
    ("trigger name", Plan(1, "p", triggers=(trig(name=" "),)), "a trigger has an empty name"),
    ("same name", Plan(1, "p", triggers=(trig(), trig())), "trigger 't': the name is used by two"),
    ("pre", Plan(1, "p", triggers=(trig(pre_ms=MAX_CAPTURE_MS + 1),)), "pre_ms is 600001, more"),
    (
        "post",
        Plan(1, "p", triggers=(trig(post_ms=-5),)),
        "trigger 't': post_ms must not be negative",
    ),
    ("tmode", Plan(1, "p", triggers=(trig(mode="edge"),)), "mode 'edge' is not one of rising_edge"),
    (
        "syntax",
        Plan(1, "p", triggers=(trig(condition="Speed >> 1"),)),
        "trigger 't': bad condition: expected a number, a signal, a function or '(' but found '>'",
    ),
    (
        "constant",
        Plan(1, "p", triggers=(trig(condition="1 > 0"),)),
        "the condition reads no signal",
    ),
    (
        "cond name",
        Plan(1, "p", triggers=(trig(condition="Speeed > 1"),)),
        "trigger 't': condition: unknown signal 'Speeed'",
    ),
    (
        "capture",
        Plan(1, "p", triggers=(trig(capture=(SignalRef("Nope"),)),)),
        "trigger 't': capture: unknown signal 'Nope'",
    ),
    (
        "capture twice",
        Plan(1, "p", triggers=(trig(capture=(SignalRef("Roll"), SignalRef("Roll"))),)),
        "trigger 't': capture lists gnss.gnss_attitude.Roll twice",
    ),
    (
        "conflict",
        Plan(1, "p", (rule(purpose=Purpose.ANALYTICS),), (trig(capture=(SignalRef("Speed"),)),)),
        "trigger 't': captures gnss.gnss_speed.Speed for diagnostics, but signal #0 collects it "
        "for analytics",
    ),
    (
        "two triggers",
        Plan(
            1,
            "p",
            triggers=(
                trig(capture=(SignalRef("Roll"),)),
                trig(name="u", capture=(SignalRef("Roll"),), purpose=Purpose.AFTER_SALES),
            ),
        ),
        "trigger 'u': captures gnss.gnss_attitude.Roll for after_sales, but trigger 't' collects",
    ),
    (
        "triggers",
        Plan(1, "p", triggers=tuple(trig(name=f"t{i}") for i in range(MAX_TRIGGERS + 1))),
        f"{MAX_TRIGGERS + 1} triggers, more than the limit of {MAX_TRIGGERS}",
    ),
]


@pytest.mark.parametrize(("plan", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_plans_are_rejected_with_the_reason(catalog: Catalog, plan: Plan, reason: str) -> None:
    with pytest.raises(PlanError) as info:
        compile_plan(plan, catalog)
    assert isinstance(info.value, AgentError)
    assert str(info.value).startswith(f"plan {plan.version} rejected: ")
    assert reason in str(info.value)


def test_same_purpose_capture_of_a_listed_signal_is_fine(catalog: Catalog) -> None:
    plan = Plan(
        2,
        "p",
        (rule(purpose=Purpose.AFTER_SALES, mode=SamplingMode.ON_CHANGE, deadband=1.0),),
        (
            trig(
                capture=(SignalRef("Speed"),), purpose=Purpose.AFTER_SALES, mode=TriggerMode.ALWAYS
            ),
        ),
    )
    compiled = compile_plan(plan, catalog)
    speed = catalog.index_of("gnss", "gnss_speed", "Speed")
    assert compiled.purpose_of == {speed: Purpose.AFTER_SALES}
    assert compiled.signals[speed].rule == plan.signals[0]
    assert compiled.plan is plan
