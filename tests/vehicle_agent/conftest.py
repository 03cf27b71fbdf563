"""Shared fixtures for the vehicle agent tests: test data locations and demo recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vehicle_agent.frames import Frame
from vehicle_agent.sources import LogSource

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return ROOT / "tools" / "demo_data"


def _read_all(path: Path) -> list[Frame]:
    with LogSource(path) as source:
        return list(source)


# The demo recordings take a second or two each to read; several tests share them.
@pytest.fixture(scope="session")
def drive_frames(demo_dir: Path) -> list[Frame]:
    return _read_all(demo_dir / "drive-gnss" / "drive_545s.MF4")


@pytest.fixture(scope="session")
def truck_frames(demo_dir: Path) -> list[Frame]:
    return _read_all(demo_dir / "truck-j1939" / "truck_idle_127s.MF4")
