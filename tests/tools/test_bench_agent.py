"""``telehub bench agent``: a short run prints the promised JSON and stores what it sent.

Only the shape and the bookkeeping are checked: timings on shared machines are
noise, so no test asserts a rate.
"""

from __future__ import annotations

import json

import pytest

from tools.cli import main

KEYS = {
    "telehub_frames_per_cpu_s",
    "naive_frames_per_cpu_s",
    "telehub_frames_per_wall_s",
    "naive_frames_per_wall_s",
    "ratio",
    "repeats",
    "target_frames_per_cpu_s",
    "meets_target",
    "telehub_core_percent_at_saturated_bus",
    "samples_sent",
    "samples_stored",
    "runs",
}


def test_bench_agent_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "agent", "--frames", "3000", "--repeats", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary.keys() >= KEYS
    assert summary["repeats"] == 1
    assert summary["frames"] == 3000
    assert summary["format"] == "blf"
    assert summary["target_frames_per_cpu_s"] == 100_000
    assert summary["telehub_frames_per_cpu_s"] > 0
    assert summary["naive_frames_per_cpu_s"] > 0
    assert summary["samples_sent"] > 0
    assert summary["samples_stored"] == summary["samples_sent"]
    (run,) = summary["runs"]
    assert run["telehub"]["frames"] == run["naive"]["frames"] == 3000
    # Both sides decode the same frames into the same number of values.
    assert run["telehub"]["frames_decoded"] == run["naive"]["frames_decoded"]
    assert run["telehub"]["samples_sent"] == run["naive"]["samples_decoded"]
    assert "BLF" in err  # says what both sides read


def test_bench_agent_typical_plan_runs_the_pushed_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["bench", "agent", "--frames", "3000", "--repeats", "1", "--plan", "typical", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    (run,) = summary["runs"]
    assert run["telehub"]["plan_version"] == 1
    assert 0 < summary["samples_sent"] < run["naive"]["samples_decoded"]
    assert summary["samples_stored"] == summary["samples_sent"]


def test_bench_agent_log_needs_a_dbc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "agent", "--log", "drive.blf"]) == 1
    assert "--dbc" in capsys.readouterr().err
