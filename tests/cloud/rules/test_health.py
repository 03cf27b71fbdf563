"""The health score: known reasons give known points; the score is deterministic."""

from __future__ import annotations

import pytest

from cloud.domain import FaultCode, FaultState
from cloud.rules import HealthScore, RuleConfig, RuleEngine, ServiceRecord
from cloud.rules.health import battery_slope
from cloud.rules.state import DAY_US
from tests.cloud.rules.scenarios import T0, S, series, steady

WEIGHTS = {
    "fault_info": 1,
    "fault_warning": 10,
    "fault_critical": 30,
    "maintenance_due": 5,
    "maintenance_overdue": 20,
    "low_battery": 15,
    "battery_decline": 7,
    "anomaly": 9,
}


def config(**values: object) -> RuleConfig:
    base: dict[str, object] = {
        "signals": {
            "speed": None,
            "battery_voltage": {"name": "Volts", "unit": "V"},
            "odometer": {"name": "Odo", "unit": "km"},
        },
        "health": {"weights": WEIGHTS, "anomaly_roles": ["battery_voltage"]},
    }
    return RuleConfig.model_validate({**base, **values})


def reasons(score: HealthScore) -> list[tuple[str, float]]:
    return [(reason.code, reason.points) for reason in score.reasons]


def test_a_vehicle_with_nothing_wrong_scores_100() -> None:
    engine = RuleEngine.new(config(), "car")
    engine.process({"Volts": series(steady(0, 60, 12.6)), "Odo": series(steady(0, 60, 1000.0))})
    assert engine.health() == HealthScore(100, (), T0 + 59 * S)


def test_active_faults_cost_points_by_severity_until_cleared() -> None:
    cfg = config(fault_severity={"P0": "critical", "B": "info"})
    engine = RuleEngine.new(cfg, "car")

    def fault(code: str, state: FaultState, ts_s: int) -> FaultCode:
        return FaultCode("uds", "body", 1, code, state, T0 + ts_s * S)

    engine.process(
        {},
        [
            fault("P0301", FaultState.SET, 1),
            fault("B1000", FaultState.SET, 2),
            fault("U0100", FaultState.SET, 3),
        ],
    )
    score = engine.health()
    assert reasons(score) == [
        ("fault:uds/body/1/B1000", 1),
        ("fault:uds/body/1/P0301", 30),
        ("fault:uds/body/1/U0100", 10),
    ]
    assert score.score == 100 - 41
    engine.process({}, [fault("P0301", FaultState.CLEARED, 4)])
    assert engine.health().score == 100 - 11


@pytest.mark.parametrize(
    ("km_since_service", "expected"),
    [(9_000, []), (10_000, [("maintenance_due", 5)]), (11_500, [("maintenance_overdue", 20)])],
)
def test_maintenance_due_and_overdue(km_since_service: float, expected: list[object]) -> None:
    cfg = config(default_model={"service_every_km": 10_000, "service_every_days": None})
    engine = RuleEngine(
        cfg,
        RuleEngine.new(cfg, "car").state,
        ServiceRecord(serviced_at_us=T0 - DAY_US, odometer_km=50_000),
    )
    engine.process({"Odo": series([(0, 50_000 + km_since_service)])})
    assert reasons(engine.health()) == expected


def test_low_battery_now_and_a_falling_daily_minimum() -> None:
    # Five days, each day's lowest voltage 0.1 V under the day before's.
    points = []
    for day in range(5):
        base = day * 86_400
        points += [(base + 10, 12.7), (base + 20, 12.4 - 0.1 * day), (base + 30, 12.7)]
    cfg = config(health={"weights": WEIGHTS, "anomaly_roles": []})
    engine = RuleEngine.new(cfg, "car")
    engine.process({"Volts": series(points)})
    assert battery_slope(engine.state.battery_daily_min) == pytest.approx(-0.1)
    assert reasons(engine.health()) == [("battery_decline", 7)]
    # Then the battery stays low: low now, on top of the decline.
    engine.process({"Volts": series(steady(5 * 86_400, 5 * 86_400 + 60, 11.2))})
    assert reasons(engine.health()) == [("low_battery", 15), ("battery_decline", 7)]
    assert engine.health().score == 100 - 22


def test_an_anomaly_against_the_vehicles_own_history() -> None:
    settings = {"weights": WEIGHTS, "anomaly_roles": ["battery_voltage"], "anomaly_min_spread": 0}
    cfg = config(health=settings)
    # Ten days whose means wander between 13.9 and 14.1 V (standard deviation 0.1 V) ...
    history = []
    for day in range(10):
        mean = 14.0 + (0.1 if day % 2 else -0.1)
        history += [(day * 86_400 + s, mean) for s in range(0, 600, 60)]
    engine = RuleEngine.new(cfg, "car")
    engine.process({"Volts": series(history)})
    assert engine.health().score == 100
    # ... and a day at 13.75 V: 2.5 deviations under, not an anomaly; 13.6 V: 4 under, one.
    day10 = [(10 * 86_400 + s, 13.75) for s in range(0, 600, 60)]
    calm = RuleEngine(cfg, RuleEngine.new(cfg, "car").state)
    calm.process({"Volts": series([*history, *day10])})
    assert calm.health().reasons == ()
    day10 = [(10 * 86_400 + s, 13.6) for s in range(0, 600, 60)]
    engine.process({"Volts": series(day10)})
    score = engine.health()
    assert reasons(score) == [("anomaly:battery_voltage", 9)]
    assert "-4.0 standard deviations" in score.reasons[0].text


def test_a_signal_that_never_varied_is_not_anomalous_for_a_hundredth() -> None:
    cfg = config(health={"weights": WEIGHTS, "anomaly_roles": ["battery_voltage"]})
    days = [(day * 86_400, 14.0) for day in range(10)]
    engine = RuleEngine.new(cfg, "car")
    engine.process({"Volts": series([*days, (10 * 86_400, 13.99)])})
    # The history's spread is 0; the floor (1 % of 14 V) makes 0.01 V a z of -0.07.
    assert engine.health().reasons == ()
    engine.process({"Volts": series([(10 * 86_400 + 1, 13.0)])})
    assert reasons(engine.health()) == [("anomaly:battery_voltage", 9)]
