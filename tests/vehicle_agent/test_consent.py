"""Consent per purpose and location coarsening."""

from __future__ import annotations

import math

import pytest

from vehicle_agent.consent import DEFAULT_CONSENT, Consent, Purpose, coarsen


def test_purposes_match_the_wire_contract_names() -> None:
    assert [p.value for p in Purpose] == [
        "diagnostics",
        "after_sales",
        "location",
        "recommendations",
        "analytics",
    ]


def test_default_consent_grants_everything_but_location() -> None:
    assert DEFAULT_CONSENT.version == 0
    assert not DEFAULT_CONSENT.allows(Purpose.LOCATION)
    for purpose in Purpose:
        if purpose is not Purpose.LOCATION:
            assert DEFAULT_CONSENT.allows(purpose)


def test_consent_allows_only_what_it_grants() -> None:
    consent = Consent(3, frozenset({Purpose.LOCATION}))
    assert consent.allows(Purpose.LOCATION)
    assert not consent.allows(Purpose.DIAGNOSTICS)
    assert not Consent(4, frozenset()).allows(Purpose.LOCATION)


def test_consent_keeps_granted_hashable_and_typed() -> None:
    consent = Consent(1, {"location", Purpose.ANALYTICS})  # type: ignore[arg-type]
    assert consent.granted == frozenset({Purpose.LOCATION, Purpose.ANALYTICS})
    assert all(isinstance(p, Purpose) for p in consent.granted)
    assert hash(consent) == hash(Consent(1, frozenset({Purpose.ANALYTICS, Purpose.LOCATION})))


def test_consent_rejects_a_negative_version_and_unknown_purpose() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Consent(-1, frozenset())
    with pytest.raises(ValueError, match="marketing"):
        Consent(1, frozenset({"marketing"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("quantum", [0.01, 0.25, 5.0, 1e-4])
def test_coarsen_rounds_to_the_nearest_multiple(quantum: float) -> None:
    for value in (56.098653, -10.14542, 0.0, 123.456789, -0.004, 7.5):
        result = coarsen(value, quantum)
        steps = result / quantum
        assert abs(steps - round(steps)) < 1e-6, (value, result)
        assert abs(result - value) <= quantum / 2 + 1e-12, (value, result)


def test_coarsen_leaves_values_alone_without_a_quantum_or_a_finite_value() -> None:
    assert coarsen(56.098653, 0.0) == 56.098653
    assert coarsen(56.098653, -1.0) == 56.098653
    assert math.isnan(coarsen(math.nan, 0.01))
    assert coarsen(math.inf, 0.01) == math.inf
