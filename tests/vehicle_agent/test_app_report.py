"""The agent report's figures."""

from __future__ import annotations

import pytest

from vehicle_agent.app import _nearest_rank


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([5.0], 0.99, 5.0),
        ([1.0, 9.0], 0.99, 9.0),  # the top of two, not the bottom
        ([1.0, 9.0], 0.5, 1.0),
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([float(v) for v in range(1, 101)], 0.5, 50.0),
        ([float(v) for v in range(1, 1001)], 0.99, 990.0),
    ],
)
def test_percentile_by_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert _nearest_rank(values, fraction) == expected
