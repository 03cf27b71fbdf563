"""Enforcing every tenant's retention policy: the job behind ``telehub cloud retention``.

For each tenant, with its own :class:`~cloud.config.RetentionPolicy`, raw
samples past their cutoff are folded into per-minute aggregates and deleted,
then aggregates, events and trips past theirs are deleted (see
:mod:`cloud.store.retention`). Cutoffs are in CAN time, counted back from the
job's clock. A tenant whose store fails is reported and skipped; the others
go on. The gateway runs the job every ``retention_interval_seconds``
(:func:`run_periodically`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cloud.config import CloudSettings
from cloud.errors import CloudError, UnknownTenant
from cloud.store import TenantRegistry

__all__ = ["RetentionReport", "enforce_retention", "run_periodically"]

logger = logging.getLogger(__name__)

_DAY_US = 86_400_000_000


@dataclass(slots=True)
class RetentionReport:
    """What one tenant's run deleted, and its cutoffs (µs since the epoch; None: kept)."""

    tenant: str
    cutoffs: dict[str, int | None] = field(default_factory=dict)
    samples_expired: int = 0
    minutes_merged: int = 0
    aggregates_expired: int = 0
    events_expired: int = 0
    trips_expired: int = 0
    error: str | None = None
    seconds: float = 0.0


def enforce_retention(
    settings: CloudSettings,
    registry: TenantRegistry,
    *,
    tenants: Sequence[str] | None = None,
    now_us: int | None = None,
    on_tenant: Callable[[RetentionReport], None] | None = None,
) -> list[RetentionReport]:
    """Run every (or each named) tenant's policy once; one report per tenant."""
    names = list(settings.tenants) if tenants is None else list(tenants)
    for name in names:
        if name not in settings.tenants:
            raise UnknownTenant(f"tenant {name!r} is not configured")
    clock = time.time_ns() // 1000 if now_us is None else now_us
    reports = []
    for name in names:
        report = _one(settings, registry, name, clock)
        reports.append(report)
        if on_tenant is not None:
            on_tenant(report)
    return reports


def _one(
    settings: CloudSettings, registry: TenantRegistry, tenant: str, now_us: int
) -> RetentionReport:
    policy = settings.retention_of(tenant)

    def cutoff(days: float | None) -> int | None:
        return None if days is None else now_us - round(days * _DAY_US)

    report = RetentionReport(
        tenant,
        cutoffs={
            "raw_samples": cutoff(policy.raw_samples_days),
            "aggregates": cutoff(policy.aggregates_days),
            "events": cutoff(policy.events_days),
            "trips": cutoff(policy.trips_days),
        },
    )
    started = time.perf_counter()
    try:
        store = registry.store(tenant)
        if (before := report.cutoffs["raw_samples"]) is not None:
            expired = store.expire_samples(before)
            report.samples_expired, report.minutes_merged = expired.samples, expired.minutes
        if (before := report.cutoffs["aggregates"]) is not None:
            report.aggregates_expired = store.expire_aggregates(before)
        if (before := report.cutoffs["events"]) is not None:
            report.events_expired = store.expire_events(before)
        if (before := report.cutoffs["trips"]) is not None:
            report.trips_expired = store.expire_trips(before)
    except CloudError as exc:
        report.error = str(exc)
        logger.warning("retention of tenant %s failed: %s", tenant, exc)
    report.seconds = time.perf_counter() - started
    return report


async def run_periodically(
    settings: CloudSettings,
    registry: TenantRegistry,
    *,
    on_run: Callable[[list[RetentionReport]], None] | None = None,
) -> None:
    """Enforce retention every ``settings.retention_interval_seconds`` until cancelled."""
    interval = settings.retention_interval_seconds
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        reports = await asyncio.to_thread(enforce_retention, settings, registry)
        if on_run is not None:
            on_run(reports)
        for r in reports:
            if r.error is None and (r.samples_expired or r.events_expired or r.trips_expired):
                logger.info(
                    "retention of %s: %d samples folded into %d minutes, %d aggregates, "
                    "%d events, %d trips expired",
                    r.tenant, r.samples_expired, r.minutes_merged, r.aggregates_expired,
                    r.events_expired, r.trips_expired,
                )  # fmt: skip
