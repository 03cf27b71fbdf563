"""``telehub bench crm`` on the PostgreSQL server: a short run reports its figures."""

from __future__ import annotations

import json

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
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    s = json.loads(out)
    assert s["errors"] == 0
    assert s["requests"] == 40
    assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["rps"] > 0
    # Every request, warm-up included, left its audit row.
    assert s["audit_rows"] == 40 + 40
    assert _bench_databases(postgres_url) == before


def test_bad_arguments_are_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "crm", "--page", "0"]) == 1
    assert "--page" in capsys.readouterr().err
