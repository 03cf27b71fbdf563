"""``telehub crm``: create-key prints a working key; serve answers on loopback and stops
gracefully on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tools.cli import main

TENANTS = json.dumps({"acme": {"token_secret": "t" * 40}})
CRM_SECRET = "c" * 40


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TELEHUB_TENANTS", TENANTS)
    monkeypatch.setenv("TELEHUB_CRM_TOKEN_SECRET", CRM_SECRET)
    return {**os.environ}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - http on loopback
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310 - loopback
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_create_key_then_serve_and_stop_on_sigterm(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crm", "create-key", "--tenant", "acme", "--admin", "--data-dir",
                 str(tmp_path)]) == 0  # fmt: skip
    key = capsys.readouterr().out.strip()
    assert key.startswith("thk_acme.")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "crm", "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the CRM did not answer within 30 s"
            time.sleep(0.1)
        status, body = _get(f"{base}/v1/dealers", key)
        assert (status, json.loads(body)) == (200, {"items": [], "next_after": None})
        assert _get(f"{base}/v1/dealers")[0] == 401
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()


def test_create_key_for_an_unknown_dealer_is_a_clear_error(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["crm", "create-key", "--tenant", "acme", "--dealer", "9", "--data-dir",
                 str(tmp_path)])  # fmt: skip
    assert code == 1
    assert "dealer 9 does not exist" in capsys.readouterr().err
