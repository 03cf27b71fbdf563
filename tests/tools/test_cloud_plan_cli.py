"""``telehub cloud plan|consent|faults|health``, called as ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.config import CloudSettings
from cloud.domain import FaultCode, FaultState, HealthReport, PlanReport, SignalDef
from cloud.store import TenantRegistry
from tests.cloud.conftest import SECRET_ACME
from tools.cli import main

CAR = "VIN-CLI-1"
PLAN = {"name": "cli-plan", "signals": [{"signal": "Engine.Speed", "purpose": "diagnostics"}]}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(
        "TELEHUB_TENANTS", json.dumps({"acme": {"token_secret": SECRET_ACME.get_secret_value()}})
    )
    directory = tmp_path / "data"
    settings = CloudSettings(data_dir=directory)
    with TenantRegistry(settings) as registry:
        registry.store("acme").enroll_vehicle(CAR)
    return directory


def _store_of(data_dir: Path) -> TenantRegistry:
    return TenantRegistry(CloudSettings(data_dir=data_dir))


def _run(data_dir: Path, *argv: str) -> int:
    return main(["cloud", *argv, "--data-dir", str(data_dir)])


def test_plan_set_then_show(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "plan.json"
    document.write_text(json.dumps(PLAN))
    assert _run(data_dir, "plan", "set", "--tenant", "acme", CAR, str(document)) == 0
    assert "plan version 1 stored" in capsys.readouterr().out
    assert _run(data_dir, "plan", "set", "--tenant", "acme", CAR, str(document)) == 0
    with _store_of(data_dir) as registry:
        store = registry.store("acme")
        store.record_plan_status(CAR, PlanReport(1, "rejected", 2, "unknown signal Speed"))
    assert _run(data_dir, "plan", "show", "--tenant", "acme", CAR) == 0
    out = capsys.readouterr().out
    assert "plan version 2 'cli-plan'" in out
    assert "running version 1 (rejected)" in out
    assert "car rejected version 2: unknown signal Speed" in out
    assert "consent version 0 (the tenant's default): after_sales, analytics," in out
    assert '"name": "Speed"' in out


def test_plan_show_without_a_plan(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "plan", "show", "--tenant", "acme", CAR) == 0
    out = capsys.readouterr().out
    assert "no plan set" in out
    assert "car reports: nothing yet" in out


def test_an_invalid_plan_is_a_clear_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "plan.json"
    document.write_text(json.dumps({"name": "x", "signals": [{"signal": "A.B", "purpose": "ads"}]}))
    assert _run(data_dir, "plan", "set", "--tenant", "acme", CAR, str(document)) == 1
    err = capsys.readouterr().err
    assert "signals[0].purpose: Input should be 'diagnostics'" in err
    missing = tmp_path / "absent.json"
    assert _run(data_dir, "plan", "set", "--tenant", "acme", CAR, str(missing)) == 1
    assert "cannot read plan document" in capsys.readouterr().err


def test_a_plan_must_fit_the_catalog_of_a_known_vehicle(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _store_of(data_dir) as registry:
        registry.store("acme").register_catalog(
            CAR, "agent", 1, [SignalDef(0, "powertrain", "Engine", "Rpm")]
        )
    document = tmp_path / "plan.json"
    document.write_text(json.dumps(PLAN))
    assert _run(data_dir, "plan", "set", "--tenant", "acme", CAR, str(document)) == 1
    assert "Engine.Speed is not in the catalog of vehicle 'VIN-CLI-1'" in capsys.readouterr().err


def test_unknown_vehicle_and_tenant(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(data_dir, "plan", "show", "--tenant", "acme", "ghost") == 1
    assert "'ghost' is not enrolled" in capsys.readouterr().err
    assert _run(data_dir, "faults", "--tenant", "nobody", CAR) == 1
    assert "tenant 'nobody' is not configured" in capsys.readouterr().err


def test_consent_set(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "consent", "set", "--tenant", "acme", CAR, "location", "diagnostics") == 0
    assert "consent version 1 grants diagnostics, location" in capsys.readouterr().out
    assert _run(data_dir, "consent", "set", "--tenant", "acme", CAR, "--none") == 0
    assert "consent version 2 grants nothing" in capsys.readouterr().out
    with _store_of(data_dir) as registry:
        consent = registry.store("acme").consent(CAR)
    assert (consent.version, consent.purposes) == (2, frozenset())
    assert _run(data_dir, "consent", "set", "--tenant", "acme", CAR) == 1
    assert "--none" in capsys.readouterr().err
    assert _run(data_dir, "consent", "set", "--tenant", "acme", CAR, "advertising") == 1
    assert "unknown purpose 'advertising': choose from diagnostics," in capsys.readouterr().err


def test_faults(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _store_of(data_dir) as registry:
        registry.store("acme").store_fault_report(
            CAR,
            3,
            [
                FaultCode("uds", "body", 0x7E8, "P0301-00", FaultState.SET, 1_700_000_000_000_000),
                FaultCode("j1939_dm1", "powertrain", 0, "SPN 520 FMI 3", FaultState.SET, 1),
                FaultCode("j1939_dm1", "powertrain", 0, "SPN 520 FMI 3", FaultState.CLEARED, 2),
            ],
        )
    assert _run(data_dir, "faults", "--tenant", "acme", CAR) == 0
    out = capsys.readouterr().out
    assert "1 active fault code(s)" in out
    assert (
        "2023-11-14T22:13:20+00:00  set      P0301-00  (uds, bus body, source 0x7e8, report 3)"
        in out
    )
    assert out.count("SPN 520 FMI 3") == 2


def test_health(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(data_dir, "health", "--tenant", "acme", CAR) == 0
    assert "no health report yet" in capsys.readouterr().out
    with _store_of(data_dir) as registry:
        registry.store("acme").record_health(
            CAR,
            HealthReport(
                time_us=1_700_000_000_000_000,
                uptime_ms=90_000,
                frames_by_bus={"powertrain": 12},
                reconnects=2,
                counters={"purged_samples": 5},
            ),
        )
    assert _run(data_dir, "health", "--tenant", "acme", CAR) == 0
    out = capsys.readouterr().out
    assert "latest of 1 health report(s)" in out
    assert "uptime           90 s" in out
    assert "frames by bus    powertrain 12" in out
    assert "purged_samples   5" in out
