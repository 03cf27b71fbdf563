"""Rule configuration documents: defaults, validation, units."""

from __future__ import annotations

import json

import pytest

from cloud.rules import RuleConfig, RuleConfigError
from cloud.rules.config import Circle, Polygon, to_engine_unit


def test_the_defaults_are_a_working_configuration() -> None:
    cfg = RuleConfig()
    assert cfg.signals.roles().keys() == {"speed"}
    assert cfg.thresholds.low_fuel_enter_pct < cfg.thresholds.low_fuel_exit_pct
    assert RuleConfig.from_json(cfg.model_dump_json()) == cfg


def test_a_document_with_geofences_models_and_units() -> None:
    doc = {
        "signals": {
            "speed": {"name": "Speed", "unit": "m/s"},
            "odometer": {"name": "DistanceTotal", "unit": "km", "message": "gnss_odo"},
        },
        "geofences": [
            {
                "kind": "circle",
                "name": "depot",
                "latitude": 56.1,
                "longitude": 10.2,
                "radius_m": 250,
            },
            {"kind": "polygon", "name": "city", "points": [[56, 10], [56, 11], [57, 11]]},
        ],
        "models": {"e-van": {"battery_kwh": 75, "service_every_km": 30000}},
    }
    cfg = RuleConfig.from_json(json.dumps(doc))
    assert [type(f) for f in cfg.geofences] == [Circle, Polygon]
    assert cfg.signals.speed is not None
    assert cfg.signals.speed.factor == 3.6
    assert cfg.model_spec("e-van").battery_kwh == 75
    assert cfg.model_spec("unknown") == cfg.default_model


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        ({"thresholds": {"idle_minuts": 3}}, "idle_minuts"),
        ({"thresholds": {"low_fuel_enter_pct": 30, "low_fuel_exit_pct": 20}}, "low_fuel"),
        ({"signals": {"speed": {"name": "Speed", "unit": "furlong/fortnight"}}}, "unknown unit"),
        (
            {
                "geofences": [
                    {"kind": "circle", "name": "a", "latitude": 0, "longitude": 0, "radius_m": 1}
                ]
                * 2
            },
            "unique",
        ),
        ({"health": {"anomaly_roles": ["tyre_pressure"]}}, "tyre_pressure"),
    ],
)
def test_a_bad_document_is_refused_with_the_reason(doc: dict[str, object], complaint: str) -> None:
    with pytest.raises(RuleConfigError, match=complaint):
        RuleConfig.from_json(json.dumps(doc))


def test_units() -> None:
    assert to_engine_unit("M") == 0.001
    assert to_engine_unit("mph") == pytest.approx(1.609344)
    with pytest.raises(RuleConfigError):
        to_engine_unit("parsec")
