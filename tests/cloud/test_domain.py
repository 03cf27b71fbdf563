"""Pure values: sample columns and the newest sample per signal."""

from __future__ import annotations

import pytest

from cloud.domain import SampleColumns, newest_per_signal


def test_columns_must_have_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        SampleColumns(signal_ids=[1, 2], ts_us=[1], values=[1.0, 2.0])


def test_newest_of_an_ordered_batch_is_the_last_occurrence() -> None:
    columns = SampleColumns([2, 1, 2, 1], [10, 10, 20, 20], [1.0, 2.0, 3.0, 4.0])
    assert newest_per_signal(columns) == [(1, (20, 4.0)), (2, (20, 3.0))]


def test_newest_of_an_unordered_batch_compares_timestamps() -> None:
    columns = SampleColumns([1, 1, 2, 1, 2], [30, 10, 5, 30, 1], [1.0, 2.0, 3.0, 4.0, 5.0])
    # Signal 1: two samples at ts 30, the later one wins the tie.
    assert newest_per_signal(columns) == [(1, (30, 4.0)), (2, (5, 3.0))]


def test_newest_of_nothing() -> None:
    assert newest_per_signal(SampleColumns([], [], [])) == []
