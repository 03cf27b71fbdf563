"""Fixtures shared by the log reader tests."""

from __future__ import annotations

import pytest

from vehicle_agent.logs import candump, text
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.logs.text import pack_rows


@pytest.fixture
def line_parser_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many frames the readers' line parser makes (their bulk path: the others)."""
    counts: list[int] = []

    def counting(rows: list[object]) -> FrameColumns:
        counts.append(len(rows))
        return pack_rows(rows)  # type: ignore[arg-type]

    monkeypatch.setattr(text, "pack_rows", counting)
    return counts


@pytest.fixture(autouse=True)
def candump_scanner_for_every_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The candump reader scans small logs too (the tests' logs are all small)."""
    monkeypatch.setattr(candump, "SCAN_FROM_BYTES", 0)
