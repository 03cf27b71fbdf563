"""``telehub bench ingest`` on the PostgreSQL server: every phase runs and reports its figures."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from tools.bench.ingest import scratch_database
from tools.cli import main

pytestmark = pytest.mark.postgres


def _bench_databases(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'telehub_bench_%'")
            )
            return {str(name) for (name,) in rows}
    finally:
        engine.dispose()


def test_a_short_run_reports_every_figure_and_drops_its_database(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _bench_databases(postgres_url)
    argv = ["bench", "ingest", "--database-url", postgres_url, "--json"]
    argv += ["--vehicles", "2", "--duration", "1", "--batch-samples", "1000", "--streams", "40"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    s = json.loads(out)
    assert s["errors"] == {}
    assert s["samples_per_s"] > 0
    assert s["copy_rows_per_s"] > 0
    assert s["ratio"] == pytest.approx(s["samples_per_s"] / s["copy_rows_per_s"], abs=1e-3)
    # Half load is paced to half of the maximum (within what a 1 s run can tell).
    assert s["half"]["samples_per_s"] < 0.75 * s["samples_per_s"]
    assert 0 < s["ack_p50_ms"] <= s["ack_p99_ms"]
    assert s["max_streams"] == 40
    assert s["rss_bytes_per_stream"] is not None
    assert s["max"]["batches_acked"] > 0
    assert s["max"]["gateway_cpu_seconds"] > 0
    assert _bench_databases(postgres_url) == before  # the scratch database is gone


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "ingest", "--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    assert main(argv) == 1
    assert "PostgreSQL not reachable at postgresql://nobody@127.0.0.1:1/none" in (
        capsys.readouterr().err
    )


def test_a_url_of_another_database_is_refused() -> None:
    from tools.bench.ingest import BenchError

    with (
        pytest.raises(BenchError, match=r"must be a postgresql:// URL"),
        scratch_database("sqlite:///x.db"),
    ):
        pass
