"""The retention job: each tenant's own policy, cutoffs from the job's clock, the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cloud.config import CloudSettings, RetentionPolicy, TenantSettings
from cloud.domain import SampleColumns, SignalDef
from cloud.errors import UnknownTenant
from cloud.retention import enforce_retention, run_periodically
from cloud.store import TenantRegistry
from tools.cli import main

DAY_US = 86_400_000_000
T0 = 1_765_000_000_000_000
SECRET = SecretStr("r" * 40)


def _settings(tmp_path: Path) -> CloudSettings:
    return CloudSettings(
        data_dir=tmp_path,
        tenants={
            "short": TenantSettings(
                token_secret=SECRET,
                retention=RetentionPolicy(raw_samples_days=1, events_days=None),
            ),
            "long": TenantSettings(token_secret=SECRET),  # 90 days of raw samples
        },
    )


def _fill(registry: TenantRegistry, tenant: str) -> None:
    store = registry.store(tenant)
    store.enroll_vehicle("car")
    ids = store.register_catalog("car", "t", 1, [SignalDef(0, "b", "M", "S")]).signal_ids
    # One sample a day for five days.
    store.ingest(
        "car", 1, SampleColumns([ids[0]] * 5, [T0 + k * DAY_US for k in range(5)], [1.0] * 5)
    )


def test_each_tenant_keeps_its_data_as_long_as_its_policy_says(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with TenantRegistry(settings) as registry:
        for tenant in ("short", "long"):
            _fill(registry, tenant)
        now = T0 + 4 * DAY_US + DAY_US // 2  # 4.5 days after the first sample
        reports = {r.tenant: r for r in enforce_retention(settings, registry, now_us=now)}
        short, long = reports["short"], reports["long"]
        assert short.cutoffs["raw_samples"] == now - DAY_US
        assert short.cutoffs["events"] is None
        assert short.samples_expired == 4  # days 0-3 are older than a day
        assert short.minutes_merged == 4
        assert registry.store("short").count_samples() == 1
        assert long.samples_expired == 0
        assert registry.store("long").count_samples() == 5
        assert short.error is None
        assert long.error is None
        history = registry.store("short").history("car", "b", "M", "S", T0, T0 + 5 * DAY_US)
        assert [m.count for m in history] == [1] * 5  # folded or not, every day is there
        # Run again: nothing left to do.
        again = enforce_retention(settings, registry, tenants=["short"], now_us=now)
        assert again[0].samples_expired == 0
        with pytest.raises(UnknownTenant):
            enforce_retention(settings, registry, tenants=["nobody"])


def test_a_policy_is_validated() -> None:
    with pytest.raises(ValidationError):
        RetentionPolicy(raw_samples_days=0)
    with pytest.raises(ValidationError):
        RetentionPolicy.model_validate({"raw_sample_days": 3})  # misspelt


def test_the_command_reports_each_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenants = {"acme": {"token_secret": "x" * 40, "retention": {"raw_samples_days": 0.5}}}
    monkeypatch.setenv("TELEHUB_TENANTS", json.dumps(tenants))
    settings = CloudSettings(data_dir=tmp_path)
    with TenantRegistry(settings) as registry:
        _fill(registry, "acme")
    assert main(["cloud", "retention", "--data-dir", str(tmp_path), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["tenants"]
    assert report["tenant"] == "acme"
    assert report["samples_expired"] == 5  # every sample is from 2025
    assert report["error"] is None
    assert main(["cloud", "retention", "--data-dir", str(tmp_path)]) == 0
    assert "acme: 0 raw samples folded into 0 minutes" in capsys.readouterr().out
    assert main(["cloud", "retention", "--data-dir", str(tmp_path), "--tenant", "nope"]) == 1
    assert "tenant 'nope' is not configured" in capsys.readouterr().err


async def test_the_gateway_enforces_retention_on_its_own(tmp_path: Path) -> None:
    settings = _settings(tmp_path).model_copy(update={"retention_interval_seconds": 0.05})
    with TenantRegistry(settings) as registry:
        _fill(registry, "short")
        ran = asyncio.Event()
        task = asyncio.create_task(run_periodically(settings, registry, on_run=lambda _: ran.set()))
        try:
            async with asyncio.timeout(10):
                await ran.wait()
        finally:
            task.cancel()
            await asyncio.wait([task])
        # Every sample is from 2025: older than a day, folded into the history.
        assert registry.store("short").count_samples() == 0
        assert len(registry.store("short").history("car", "b", "M", "S", T0, T0 + 5 * DAY_US)) == 5
    never = settings.model_copy(update={"retention_interval_seconds": 0})
    with TenantRegistry(never) as registry:
        await run_periodically(never, registry)  # returns at once
