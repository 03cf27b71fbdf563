"""Fault injection: the agent is killed with SIGKILL at random moments and the cloud
is stopped and started while a real recording replays; at the end the store holds
every sample the plan selected, none twice, and evictions explain any difference.

The agent runs as a real process (``telehub agent run``) with its durable outbox;
the cloud is the real gRPC gateway on loopback with a SQLite tenant store. Each
variant is bounded: a fixed number of kills and cloud restarts, each step with a
timeout, and a final run that must finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry
from cloud.store.models import EvictionRow, Signal
from tests.test_end_to_end import SECRET, TENANT, independent_rows, recording, stored_rows

ROOT = Path(__file__).resolve().parents[1]
VEHICLE = "DEMO-CAR-0001"


@dataclass
class Run:
    kills: int = 0
    cloud_restarts: int = 0
    runs: int = 0
    log: list[str] = field(default_factory=list)


def _agent_env(port: int, outbox: Path, extra: dict[str, str]) -> dict[str, str]:
    rec = recording(VEHICLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEHUB_")}
    env.update(
        {
            "TELEHUB_VEHICLE_ID": VEHICLE,
            "TELEHUB_TOKEN": issue_token(TENANT, VEHICLE, SECRET),
            "TELEHUB_GATEWAY": f"127.0.0.1:{port}",
            "TELEHUB_DBC": json.dumps(
                [{"path": str(s.path), "bus": s.bus, "channel": s.channel} for s in rec.dbcs]
            ),
            "TELEHUB_LOG_FILE": rec.log,
            "TELEHUB_OUTBOX": str(outbox),
            "TELEHUB_BATCH_MAX_SAMPLES": "500",
            "TELEHUB_RECONNECT_INITIAL": "0.05",
            "TELEHUB_RECONNECT_MAX": "0.3",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def _start_agent(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "agent", "run", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _restart_cloud(
    server: GatewayServer, settings: CloudSettings, registry: TenantRegistry, port: int
) -> GatewayServer:
    await server.stop(0)
    await asyncio.sleep(0.4)
    return await start_gateway(
        settings.model_copy(update={"listen": f"127.0.0.1:{port}"}), registry
    )


async def _chaos(
    settings: CloudSettings,
    registry: TenantRegistry,
    outbox: Path,
    extra_env: dict[str, str],
    *,
    kills: int,
    seed: int,
) -> tuple[Run, dict[str, Any]]:
    rng = random.Random(seed)
    registry.store(TENANT).enroll_vehicle(VEHICLE)
    server = await start_gateway(settings, registry)
    port = server.port
    env = _agent_env(port, outbox, extra_env)
    run = Run()
    try:
        for n in range(kills):
            agent = _start_agent(env)
            run.runs += 1
            # Python start-up takes about a second; kill somewhere in the replay.
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            if n % 2 == 1:
                server = await _restart_cloud(server, settings, registry, port)
                run.cloud_restarts += 1
                await asyncio.sleep(rng.uniform(0.2, 1.0))
            if agent.poll() is None:
                agent.send_signal(signal.SIGKILL)
                run.kills += 1
            await asyncio.to_thread(agent.communicate, timeout=30)
            run.log.append(f"run {n + 1}: exit {agent.returncode}")
        # The last run must replay what is left and drain the outbox.
        agent = _start_agent(env)
        run.runs += 1
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        server = await _restart_cloud(server, settings, registry, port)
        run.cloud_restarts += 1
        out, err = await asyncio.to_thread(agent.communicate, timeout=180)
        assert agent.returncode == 0, f"the final agent run failed:\n{err[-3000:]}"
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    finally:
        with contextlib.suppress(Exception):
            agent.kill()
        await server.stop(0)
    return run, report


def _evicted_by_signal(registry: TenantRegistry) -> Counter[tuple[str, str]]:

    store = registry.store(TENANT)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(Signal.message, Signal.name, func.sum(EvictionRow.samples))
            .join(Signal, EvictionRow.signal_id == Signal.id)
            .group_by(Signal.message, Signal.name)
        )
        return Counter({(m, s): int(n) for m, s, n in rows})


@pytest.mark.slow
async def test_sigkill_and_cloud_restarts_lose_nothing_and_store_nothing_twice(
    settings: CloudSettings, registry: TenantRegistry, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    run, report = await _chaos(
        settings, registry, tmp_path / "outbox.sqlite", {}, kills=4, seed=seed
    )
    expected = Counter(independent_rows(recording(VEHICLE)))
    stored = Counter(stored_rows(registry, VEHICLE))
    print(f"seed {seed}: {run.kills} kills, {run.cloud_restarts} cloud restarts, {run.runs} runs")
    print(f"expected {sum(expected.values())} samples, stored {sum(stored.values())}")
    assert run.kills >= 2, f"too few kills landed mid-replay (seed {seed}): {run.log}"
    assert stored == expected, f"seed {seed}"
    assert report["evicted_samples"] == 0


@pytest.mark.slow
async def test_a_small_outbox_evicts_and_the_evicted_counts_explain_the_difference(
    settings: CloudSettings, registry: TenantRegistry, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    small = {"TELEHUB_OUTBOX_MAX_BYTES": str(64 * 1024), "TELEHUB_OVERFLOW": "evict"}
    run, _ = await _chaos(settings, registry, tmp_path / "outbox.sqlite", small, kills=3, seed=seed)
    expected = Counter(independent_rows(recording(VEHICLE)))
    stored = Counter(stored_rows(registry, VEHICLE))
    missing = expected - stored
    print(
        f"seed {seed}: {run.kills} kills, {run.cloud_restarts} cloud restarts; expected "
        f"{sum(expected.values())}, stored {sum(stored.values())}, missing {sum(missing.values())}"
    )
    assert not stored - expected, f"stored samples the recording does not hold (seed {seed})"
    evicted = _evicted_by_signal(registry)
    missing_by_signal = Counter({(m, s): 0 for m, s, _, _ in missing})
    for (m, s, _, _), n in missing.items():
        missing_by_signal[(m, s)] += n
    assert sum(evicted.values()) > 0, f"the small outbox never filled (seed {seed})"
    assert +evicted == +missing_by_signal, f"seed {seed}"
