"""Plan documents: strict validation with a clear message per problem, catalog checks, wire form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud.domain import Consent, Purpose
from cloud.errors import InvalidPlan
from cloud.plans import PlanDocument, check_signals, parse_plan
from cloud.wire import consent_to_wire, plan_to_wire
from telehub.v1 import telemetry_pb2

SIGNAL = {"signal": "Engine.Speed", "purpose": "diagnostics"}
TRIGGER = {"name": "fast", "condition": "Speed > 120", "purpose": "diagnostics"}


def _plan(**changes: Any) -> dict[str, Any]:
    return {"name": "p", "signals": [SIGNAL], **changes}


def _signal(**changes: Any) -> dict[str, Any]:
    return _plan(signals=[{**SIGNAL, **changes}])


def _trigger(**changes: Any) -> dict[str, Any]:
    return _plan(triggers=[{**TRIGGER, **changes}])


def test_a_full_document_is_accepted_and_normalised() -> None:
    plan = parse_plan(
        json.dumps(
            {
                "name": "full",
                "signals": [
                    {"signal": "Speed", "purpose": "location"},
                    {
                        "signal": "Engine.Speed",
                        "purpose": "after_sales",
                        "mode": "on_change",
                        "deadband": 2.5,
                        "min_interval_ms": 100,
                        "heartbeat_ms": 1000,
                        "priority": 255,
                        "quantum": 0.5,
                    },
                    {
                        "signal": {"bus": "can1", "message": "Gear", "name": "Pos"},
                        "purpose": "analytics",
                    },
                ],
                "triggers": [
                    {
                        **TRIGGER,
                        "mode": "always",
                        "min_interval_ms": 500,
                        "pre_ms": 60_000,
                        "post_ms": 600_000,
                        "capture": ["can1.Gear.Pos", "Speed"],
                        "priority": 3,
                    },
                ],
            }
        )
    )
    assert [str(item.signal) for item in plan.signals] == ["Speed", "Engine.Speed", "can1.Gear.Pos"]
    assert [str(ref) for ref in plan.referenced()] == ["Speed", "Engine.Speed", "can1.Gear.Pos"]
    stored = plan.model_dump(mode="json")
    assert stored["signals"][0]["signal"] == {"bus": "", "message": "", "name": "Speed"}
    assert parse_plan(stored) == plan
    assert parse_plan(plan) is plan


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "the plan is not valid JSON"),
        ("[]", "the plan must be a JSON object"),
        ({}, "name: Field required"),
        ({"name": ""}, "name: String should have at least 1 character"),
        (_plan(owner="me"), "owner: unknown key"),
        (_signal(colour="red"), "signals[0].colour: unknown key"),
        (_plan(signals=[{"purpose": "diagnostics"}]), "signals[0].signal: Field required"),
        (_plan(signals=[{"signal": "A.B"}]), "signals[0].purpose: Field required"),
        (
            _signal(purpose="ads"),
            "signals[0].purpose: Input should be 'diagnostics', 'after_sales'",
        ),
        (_signal(signal="a.b.c.d"), "must be 'Signal', 'Message.Signal' or 'Bus.Message.Signal'"),
        (_signal(signal="Engine..Speed"), "must be 'Signal', 'Message.Signal'"),
        (
            _signal(signal={"name": "Sp eed"}),
            "signals[0].signal.name: 'Sp eed' must not contain spaces or dots",
        ),
        (_signal(signal={"message": "Engine"}), "signals[0].signal.name: Field required"),
        (_signal(signal=7), "signals[0].signal: Input should be"),
        (_signal(mode="sometimes"), "signals[0].mode: Input should be 'every' or 'on_change'"),
        (_signal(deadband=1), "signals[0]: deadband applies only to mode 'on_change'"),
        (
            _signal(mode="on_change", deadband=-1),
            "signals[0].deadband: Input should be greater than or equal to 0",
        ),
        (_signal(quantum=float("inf")), "signals[0].quantum: Input should be a finite number"),
        (
            _signal(min_interval_ms=1.5),
            "signals[0].min_interval_ms: Input should be a valid integer",
        ),
        (
            _signal(min_interval_ms="5"),
            "signals[0].min_interval_ms: Input should be a valid integer",
        ),
        (_signal(heartbeat_ms=True), "signals[0].heartbeat_ms: Input should be a valid integer"),
        (
            _signal(heartbeat_ms=86_400_001),
            "signals[0].heartbeat_ms: Input should be less than or equal to 86400000",
        ),
        (
            _signal(min_interval_ms=-1),
            "signals[0].min_interval_ms: Input should be greater than or equal to 0",
        ),
        (
            _signal(min_interval_ms=500, heartbeat_ms=100),
            "heartbeat_ms (100) must not be shorter than min_interval_ms (500)",
        ),
        (_signal(priority=256), "signals[0].priority: Input should be less than or equal to 255"),
        (
            _plan(signals=[SIGNAL, {**SIGNAL, "purpose": "analytics"}]),
            "signals[1]: Engine.Speed is listed twice (also signals[0])",
        ),
        (
            _trigger(name="no spaces"),
            "triggers[0].name: must be 1-64 characters of letters, digits",
        ),
        (_trigger(condition=" "), "triggers[0].condition: condition must not be blank"),
        (_trigger(condition=""), "triggers[0].condition: String should have at least 1 character"),
        (
            _trigger(mode="falling_edge"),
            "triggers[0].mode: Input should be 'rising_edge' or 'always'",
        ),
        (
            _trigger(pre_ms=60_001),
            "triggers[0].pre_ms: Input should be less than or equal to 60000",
        ),
        (
            _trigger(post_ms=600_001),
            "triggers[0].post_ms: Input should be less than or equal to 600000",
        ),
        (_trigger(capture=["a.b.c.d"]), "triggers[0].capture[0]: signal 'a.b.c.d' must be"),
        (_trigger(purpose=None), "triggers[0].purpose: Input should be 'diagnostics'"),
        (_plan(triggers=[TRIGGER, TRIGGER]), "trigger name 'fast' is used twice"),
    ],
)
def test_every_problem_is_named_with_where_it_is(document: Any, message: str) -> None:
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(document)
    text = str(caught.value)
    assert text.startswith("invalid collection plan:\n  ")
    assert message in text


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(_signal(mode="x", priority=-1, extra=1))
    lines = str(caught.value).splitlines()[1:]
    assert len(lines) == 3


CATALOG = [
    ("powertrain", "Engine", "Speed"),
    ("chassis", "Wheel", "Speed"),
    ("body", "Gear", "Pos"),
]


def test_signals_are_checked_against_the_catalog() -> None:
    check_signals(parse_plan(_plan()), CATALOG, vehicle_id="car")
    check_signals(
        parse_plan(_trigger(capture=["Gear.Pos", "chassis.Wheel.Speed"])), CATALOG, vehicle_id="car"
    )
    with pytest.raises(InvalidPlan) as caught:
        check_signals(
            parse_plan(_plan(signals=[{**SIGNAL, "signal": "Speed"}, {**SIGNAL, "signal": "X.Y"}])),
            CATALOG,
            vehicle_id="car",
        )
    text = str(caught.value)
    assert "collection plan 'p' does not fit the vehicle's catalog" in text
    assert (
        "Speed is ambiguous in the catalog (matches powertrain.Engine.Speed, chassis.Wheel.Speed)"
        in text
    )
    assert "X.Y is not in the catalog of vehicle 'car'" in text


def test_plan_to_wire() -> None:
    plan = parse_plan(
        _plan(
            signals=[{**SIGNAL, "mode": "on_change", "deadband": 3, "quantum": 0.1}],
            triggers=[
                {**TRIGGER, "mode": "always", "capture": ["body.Gear.Pos"], "purpose": "location"}
            ],
        )
    )
    message = plan_to_wire(4, plan)
    assert (message.version, message.name) == (4, "p")
    [signal] = message.signals
    assert (signal.signal.bus, signal.signal.message, signal.signal.name) == ("", "Engine", "Speed")
    assert signal.purpose == telemetry_pb2.PURPOSE_DIAGNOSTICS
    assert (signal.mode, signal.deadband, signal.quantum) == (
        telemetry_pb2.SAMPLING_MODE_ON_CHANGE,
        3.0,
        0.1,
    )
    [trigger] = message.triggers
    assert (trigger.mode, trigger.purpose) == (
        telemetry_pb2.TRIGGER_MODE_ALWAYS,
        telemetry_pb2.PURPOSE_LOCATION,
    )
    assert [(ref.bus, ref.message, ref.name) for ref in trigger.capture] == [
        ("body", "Gear", "Pos")
    ]
    assert isinstance(PlanDocument.model_validate(plan.model_dump(mode="json")), PlanDocument)


def test_consent_to_wire_lists_purposes_in_a_stable_order() -> None:
    message = consent_to_wire(Consent(3, frozenset({Purpose.ANALYTICS, Purpose.DIAGNOSTICS})))
    assert message.version == 3
    assert list(message.granted) == [
        telemetry_pb2.PURPOSE_DIAGNOSTICS,
        telemetry_pb2.PURPOSE_ANALYTICS,
    ]
