"""``telehub bench crm`` on the PostgreSQL server: a short run reports its figures."""

from __future__ import annotations

import json
import statistics

import pytest

from tests.tools.test_bench_ingest import _bench_databases
from tools.cli import main


@pytest.mark.postgres
def test_a_short_run_reports_latency_and_drops_its_database(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _bench_databases(postgres_url)
    argv = ["bench", "crm", "--database-url", postgres_url, "--json"]
    argv += ["--vehicles", "300", "--rate", "40", "--duration", "1", "--page", "20"]
    code = main([*argv, "--repeats", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    s = json.loads(out)
    assert s["errors"] == 0
    assert s["requests"] == 2 * 40
    assert [run["requests"] for run in s["runs"]] == [40, 40]
    assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["p99_ms"] == round(statistics.median(run["p99_ms"] for run in s["runs"]), 3)
    assert s["rps"] > 0
    assert s["server_cpu_ms_per_request"] > 0
    # The baseline ran the reference path on the same data, and the ratios compare them.
    baseline = s["baseline"]
    assert baseline["requests"] == 40
    # Each ran the path it names: the direct one on its pool, the reference one without.
    assert all(run["health_pool_connections"] > 0 for run in s["runs"])
    assert baseline["health_pool_connections"] == 0
    assert s["paths_as_named"] is True
    assert baseline["errors"] == 0
    ratio = s["ratios"]["server_cpu_ms_per_request_baseline_over_direct"]
    assert ratio == round(baseline["server_cpu_ms_per_request"] / s["server_cpu_ms_per_request"], 2)
    # Every request, warm-ups included, left its audit row: 2 servers x (40 + runs).
    assert s["audit_rows"] == (40 + 2 * 40) + (40 + 40)
    assert s["audit_rows_missing"] == 0
    assert _bench_databases(postgres_url) == before


def test_bad_arguments_are_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "crm", "--page", "0"]) == 1
    assert "--page" in capsys.readouterr().err
    assert main(["bench", "crm", "--repeats", "0"]) == 1
    assert "--repeats" in capsys.readouterr().err
