"""``telehub agent status``: the outbox read while (or after) an agent runs on it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from telehub.v1 import telemetry_pb2 as pb
from tools.cli import main
from vehicle_agent.app import HEALTH_STATE
from vehicle_agent.batching import Batch
from vehicle_agent.control import CONSENT_STATE, PLAN_STATE
from vehicle_agent.outbox import Outbox


def _fill(path: Path) -> None:
    async def fill() -> None:
        with Outbox(path) as outbox:
            for n in range(3):
                batch = Batch(catalog_id=2**64 - 5)
                for i in range(10 * (n + 1)):
                    batch.append(i % 4, 1_700_000_000_000_000 + i, float(i))
                await outbox.put(batch)
            await outbox.put_report(b"")
            outbox.save_state(
                PLAN_STATE, pb.CollectionPlan(version=4, name="speed").SerializeToString()
            )
            outbox.save_state(
                CONSENT_STATE,
                pb.ConsentUpdate(version=2, granted=[pb.PURPOSE_DIAGNOSTICS]).SerializeToString(),
            )
            outbox.save_state(
                HEALTH_STATE,
                pb.AgentHealth(frames_by_bus={"gnss": 1234}, reconnects=3).SerializeToString(),
            )

    asyncio.run(fill())


def test_status_reports_the_outbox_and_the_last_counters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "outbox.sqlite"
    _fill(path)
    assert main(["agent", "status", "--outbox", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pending_batches"] == 3
    assert data["pending_samples"] == 60
    assert data["sequences"] == [1, 3]
    assert data["pending_reports"] == 1
    assert data["never_connected"] is True
    assert data["plan"]["version"] == 4
    assert data["consent"] == {"version": 2, "granted": ["diagnostics"]}
    assert data["last_counters"]["frames_by_bus"] == {"gnss": "1234"}
    assert data["last_counters"]["reconnects"] == "3"

    assert main(["agent", "status", "--outbox", str(path)]) == 0
    text = capsys.readouterr().out
    assert "pending batches" in text
    assert "reconnects: 3" in text


def test_status_of_a_missing_or_foreign_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agent", "status", "--outbox", str(tmp_path / "nope.sqlite")]) == 1
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"not a database at all" * 100)
    assert main(["agent", "status", "--outbox", str(other)]) == 1
    assert "outbox" in capsys.readouterr().err
