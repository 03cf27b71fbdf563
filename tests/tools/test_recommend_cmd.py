"""``telehub recommend`` and ``telehub bench recommend``: through ``main`` and as processes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from cloud.config import CloudSettings, TenantSettings
from cloud.domain import SampleColumns, SignalDef
from cloud.recommend.config import hash_api_key
from cloud.store import TenantRegistry
from tools.cli import main
from tools.demo_recommend import end_of_drive_suggestions


def test_hash_key_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("my-key\n"))
    assert main(["recommend", "hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hash_api_key("my-key")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["recommend", "hash-key"]) == 2


def test_bench_recommend_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "bench",
        "recommend",
        "--pois",
        "3000",
        "--rate",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--repeats",
        "2",
        "--json",
    ]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["errors"] == 0
    assert result["requests"] == 200
    assert [phase["requests"] for phase in result["repeats"]] == [100, 100]
    assert result["baseline"]["requests"] == 100
    assert result["baseline"]["errors"] == 0
    assert result["catalog_pois"] == 3000
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["rps"] > 0


def test_bench_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "recommend", "--rate", "0"]) == 2
    assert "--rate" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_and_stops_gracefully(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("serve-test-key-0123456789\n")
    port = _free_port()
    env = {**os.environ, "TELEHUB_DATA_DIR": str(tmp_path)}
    env.pop("TELEHUB_TENANTS", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "recommend",
            "serve",
            "--sample",
            "--api-key-file",
            str(key_file),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "tenants": 1}
        catalog = httpx.get(
            f"http://127.0.0.1:{port}/v1/catalog",
            timeout=5,
            headers={"X-API-Key": "serve-test-key-0123456789"},
        )
        assert catalog.json()["tenant"] == "demo-motors"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = process.stderr.read() if process.stderr else ""
    process.stderr.close() if process.stderr else None
    assert "recommendations on http://127.0.0.1:" in err
    # uvicorn stops gracefully, then re-raises the signal to end the process as it asked.
    assert process.returncode in (0, -signal.SIGTERM), err


async def test_end_of_drive_suggestions_from_the_stored_position(tmp_path: Path) -> None:
    settings = CloudSettings(
        data_dir=tmp_path,
        tenants={"demo-motors": TenantSettings(token_secret=SecretStr("t" * 40))},
    )
    with TenantRegistry(settings) as registry:
        store = registry.store("demo-motors")
        assert await end_of_drive_suggestions(store, "CAR", tmp_path / "c.json") is None
        signals = [
            SignalDef(0, "gnss", "Pos", "Latitude"),
            SignalDef(1, "gnss", "Pos", "Longitude"),
        ]
        store.enroll_vehicle("CAR")
        mapping, _ = store.open_session("CAR", "test", 1, signals)
        ids = [mapping.signal_ids[0], mapping.signal_ids[1]]
        store.ingest("CAR", 1, SampleColumns(ids, [1, 1], [56.1572, 10.2107]))
        shown = await end_of_drive_suggestions(store, "CAR", tmp_path / "c.json")
    assert shown is not None
    assert len(shown["places"]) == 3
    assert shown["lines"][0].startswith("1. ")
    assert any("no location consent" in line for line in shown["lines"])
    assert (tmp_path / "c.json").exists()
