"""Opening hours, the grid index against brute force, contexts and pseudonyms."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from cloud.recommend.context import (
    Position,
    Precision,
    coarsen,
    estimate_range_km,
    pseudonym,
    recipient_key,
)
from cloud.recommend.hours import parse_hours
from cloud.recommend.spatial import GridIndex, haversine_km


@pytest.mark.parametrize(
    ("text", "when", "open_"),
    [
        ("24/7", "2026-12-06T03:00", True),
        ("Mo-Fr 07:00-17:00", "2026-12-07T07:00", True),  # a Monday
        ("Mo-Fr 07:00-17:00", "2026-12-07T17:00", False),  # closing time is closed
        ("Mo-Fr 07:00-17:00", "2026-12-06T12:00", False),  # a Sunday
        ("Mo-Fr 07:00-17:00; Sa,Su 10:00-12:00", "2026-12-06T11:00", True),
        ("Su 22:00-06:00", "2026-12-07T05:59", True),  # past midnight into Monday
        ("Fr-Mo 09:00-10:00", "2026-12-06T09:30", True),  # a range across the week's end
        ("Mo-Su 08:00-20:00; Tu off", "2026-12-08T12:00", False),
        ("Mo 08:00-12:00,13:00-17:00", "2026-12-07T12:30", False),
    ],
)
def test_opening_hours(text: str, when: str, open_: bool) -> None:
    assert parse_hours(text).is_open(datetime.fromisoformat(when)) is open_


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("Mon 08:00-12:00", "days"),
        ("Mo 8-12", "times"),
        ("Mo 25:00-26:00", "not a time"),
        ("Mo 08:00-08:00", "same time"),
    ],
)
def test_bad_opening_hours_say_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_hours(text)


@pytest.mark.parametrize(
    ("centre", "radius_km"),
    [
        ((56.1, 10.19), 25.0),
        ((56.1, 10.19), 3.0),
        ((0.0, 179.95), 40.0),
        ((0.0, -179.95), 40.0),
        ((89.5, 0.0), 200.0),
        ((-60.0, 20.0), 3000.0),
    ],
)
def test_grid_finds_exactly_what_brute_force_finds(
    centre: tuple[float, float], radius_km: float
) -> None:
    rng = np.random.default_rng(11)
    lat, lon = centre
    lats = np.clip(lat + rng.normal(0, 1.0, 20_000), -90, 90)
    lons = (lon + rng.normal(0, 1.5, 20_000) + 180) % 360 - 180
    index = GridIndex(lats, lons, cell_deg=0.05)
    found, distances = index.within(lat, lon, radius_km)
    every = haversine_km(lat, lon, lats, lons)
    expected = np.nonzero(every <= radius_km)[0]
    assert found.tolist() == expected.tolist()
    assert np.allclose(distances, every[expected])
    assert found.size > 0


def test_grid_of_nothing_finds_nothing() -> None:
    index = GridIndex(np.empty(0), np.empty(0))
    assert index.within(0, 0, 10)[0].size == 0


def test_coarsening_is_idempotent_and_keeps_the_cell() -> None:
    coarse = coarsen(Position(56.1234, 10.1987))
    assert coarse == Position(56.15, 10.15, Precision.COARSE)
    assert coarsen(coarse) == coarse
    assert coarsen(Position(90.0, 180.0)).lat == 89.95


def test_range_from_level_capacity_and_consumption() -> None:
    assert estimate_range_km(50, 60, 15) == pytest.approx(200.0)


def test_pseudonyms_differ_per_recipient_and_tenant_and_never_contain_the_vin() -> None:
    secret = b"k" * 32
    vin = "WVWZZZ1KZAW000001"
    tokens = {
        pseudonym(recipient_key(secret, tenant, recipient), vin)
        for tenant in ("acme", "globex")
        for recipient in ("head-unit", "app")
    }
    assert len(tokens) == 4
    assert all(len(token) == 64 and vin.lower() not in token for token in tokens)
    key = recipient_key(secret, "acme", "app")
    assert pseudonym(key, vin) == pseudonym(key, vin)
