"""``telehub cloud``: run the gateway, enroll vehicles, set plans and consent, read diagnostics.

Settings come from ``TELEHUB_*`` environment variables (see ``cloud.config``),
e.g. ``TELEHUB_TENANTS='{"acme": {"token_secret": "..."}}'``; the flags here
override the listen address and data folder.

Plans and consent set here are written to the tenant's store; a running
gateway (another process) notices within ``control_poll_seconds`` and pushes
them to the car.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.app import enroll, serve
from cloud.config import CloudSettings
from cloud.control import ControlService
from cloud.domain import FaultEntry, Purpose
from cloud.errors import InvalidPlan
from cloud.retention import enforce_retention
from cloud.store import TenantRegistry, TenantStore
from tools.workers import run_workers


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cloud", help="run the cloud gateway, enroll vehicles", description=__doc__)
    cloud_sub = p.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)

    s = cloud_sub.add_parser("serve", help="run the gRPC gateway until interrupted")
    _common(s)
    s.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="gateway processes sharing the address, the stores and the event bus (default 1)",
    )
    s.set_defaults(handler=_serve)

    e = cloud_sub.add_parser("enroll", help="enroll a vehicle in a tenant and print its token")
    _common(e)
    e.add_argument("--tenant", required=True)
    e.add_argument("--vehicle", required=True, help="the vehicle's id (e.g. its VIN)")
    e.set_defaults(handler=_enroll)

    plan = cloud_sub.add_parser("plan", help="set or show a vehicle's collection plan")
    plan_sub = plan.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    ps = plan_sub.add_parser("set", help="store a new plan version from a JSON document")
    _vehicle_args(ps)
    ps.add_argument("document", type=Path, help="the plan document (JSON, see cloud.plans)")
    ps.set_defaults(handler=_plan_set)
    pw = plan_sub.add_parser("show", help="the stored plan and what the car reports running")
    _vehicle_args(pw)
    pw.set_defaults(handler=_plan_show)

    consent = cloud_sub.add_parser("consent", help="set the owner's consent of a vehicle")
    consent_sub = consent.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    cs = consent_sub.add_parser(
        "set", help="grant exactly these purposes (every other one is withdrawn)"
    )
    _vehicle_args(cs)
    choices = ", ".join(purpose.value for purpose in Purpose)
    # Checked by the handler: argparse refuses an empty list when nargs="*" has choices.
    cs.add_argument("purposes", nargs="*", metavar="PURPOSE", help=choices)
    cs.add_argument("--none", action="store_true", help="withdraw every purpose")
    cs.set_defaults(handler=_consent_set)

    f = cloud_sub.add_parser("faults", help="a vehicle's active fault codes and their history")
    _vehicle_args(f)
    f.add_argument("--limit", type=int, default=50, help="history entries shown (default 50)")
    f.set_defaults(handler=_faults)

    h = cloud_sub.add_parser("health", help="the latest health report of a vehicle's agent")
    _vehicle_args(h)
    h.set_defaults(handler=_health)

    r = cloud_sub.add_parser(
        "retention",
        help="enforce each tenant's retention policy now (raw samples to minutes, expiry)",
    )
    r.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")
    r.add_argument("--tenant", action="append", help="only this tenant (repeat for several)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(handler=_retention)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port to listen on (default from TELEHUB_LISTEN)")
    p.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")


def _vehicle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")
    p.add_argument("--tenant", required=True)
    p.add_argument("vehicle", help="the vehicle's id (e.g. its VIN)")


def _settings(args: argparse.Namespace) -> CloudSettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "listen", None):
        overrides["listen"] = args.listen
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    return CloudSettings(**overrides)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.workers == 1:
        # One line on stdout once the port is bound (the port picked for :0), for
        # people, scripts and the --workers supervisor, which waits for it.
        asyncio.run(
            serve(
                settings,
                on_started=lambda server: print(f"listening on {server.target}", flush=True),
            )
        )
        return 0
    return asyncio.run(
        run_workers(
            settings,
            args.workers,
            verbose=getattr(args, "verbose", 0),
            on_listening=lambda listen: print(
                f"{args.workers} gateway workers listening on {listen}", flush=True
            ),
        )
    )


def _enroll(args: argparse.Namespace) -> int:
    print(enroll(_settings(args), args.tenant, args.vehicle))
    return 0


@contextmanager
def _registry(args: argparse.Namespace) -> Iterator[TenantRegistry]:
    with TenantRegistry(_settings(args)) as registry:
        yield registry


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[TenantStore]:
    with _registry(args) as registry:
        yield registry.store(args.tenant)


def _plan_set(args: argparse.Namespace) -> int:
    path: Path = args.document
    try:
        document = path.read_bytes()
    except OSError as exc:
        raise InvalidPlan(f"cannot read plan document {path}: {exc.strerror}") from exc
    with _registry(args) as registry:
        version = ControlService(registry).set_plan(args.tenant, args.vehicle, document)
    print(f"{args.vehicle}: plan version {version} stored; the gateway pushes it to the car")
    return 0


def _plan_show(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        status = ControlService(registry).vehicle_status(args.tenant, args.vehicle)
    plan, reported, consent = status.plan, status.reported, status.consent
    if plan is None:
        print(f"{args.vehicle}: no plan set (the car runs its built-in default)")
    else:
        created = _when(plan.created_at)
        print(f"{args.vehicle}: plan version {plan.version} {plan.name!r}, set {created}")
    if reported is None:
        print("car reports: nothing yet")
    else:
        print(
            f"car reports: running version {reported.running_version} ({reported.state}), "
            f"consent version {reported.consent_version}, at {_when(reported.reported_at)}"
        )
        if reported.rejected_version:
            print(f"car rejected version {reported.rejected_version}: {reported.reason}")
    granted = ", ".join(sorted(consent.purposes)) or "nothing"
    source = "the tenant's default" if consent.version == 0 else f"set {_when(consent.updated_at)}"
    print(f"consent version {consent.version} ({source}): {granted}")
    if plan is not None:
        print(json.dumps(plan.document, indent=2))
    return 0


def _consent_set(args: argparse.Namespace) -> int:
    if args.none == bool(args.purposes):
        raise InvalidPlan("give the purposes to grant, or --none to withdraw every purpose")
    known = {purpose.value: purpose for purpose in Purpose}
    unknown = [value for value in args.purposes if value not in known]
    if unknown:
        raise InvalidPlan(f"unknown purpose {unknown[0]!r}: choose from {', '.join(known)}")
    purposes = [known[value] for value in args.purposes]
    with _registry(args) as registry:
        version = ControlService(registry).set_consent(args.tenant, args.vehicle, purposes)
    granted = ", ".join(sorted(set(args.purposes))) or "nothing"
    print(f"{args.vehicle}: consent version {version} grants {granted}")
    return 0


def _faults(args: argparse.Namespace) -> int:
    with _store(args) as store:
        active = store.active_faults(args.vehicle)
        history = store.fault_history(args.vehicle, limit=args.limit)
    print(f"{args.vehicle}: {len(active)} active fault code(s)")
    for entry in active:
        print(f"  {_fault_line(entry)}")
    print(f"history (newest first, at most {args.limit}):")
    for entry in history:
        print(f"  {_fault_line(entry)}")
    return 0


def _health(args: argparse.Namespace) -> int:
    with _store(args) as store:
        report = store.latest_health(args.vehicle)
        count = store.health_report_count(args.vehicle)
    if report is None:
        print(f"{args.vehicle}: no health report yet")
        return 0
    print(
        f"{args.vehicle}: latest of {count} health report(s), received {_when(report.received_at)}"
    )
    rows: list[tuple[str, object]] = [
        ("reported at", _when(_from_us(report.time_us))),
        ("uptime", f"{report.uptime_ms / 1000:.0f} s"),
        (
            "frames by bus",
            ", ".join(f"{bus} {n}" for bus, n in sorted(report.frames_by_bus.items())),
        ),
        ("decode errors", report.decode_errors),
        ("unknown ids", report.unknown_ids),
        ("outbox", f"{report.outbox_batches} batches, {report.outbox_bytes} bytes"),
        ("evicted samples", report.evicted_samples),
        ("reconnects", report.reconnects),
        (
            "ack latency",
            f"p50 {report.ack_latency_p50_ms:.1f} ms, p99 {report.ack_latency_p99_ms:.1f} ms",
        ),
        ("plan version", report.plan_version),
        ("consent version", report.consent_version),
        *sorted(report.counters.items()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


def _fault_line(entry: FaultEntry) -> str:
    fault = entry.fault
    return (
        f"{_when(_from_us(fault.ts_us))}  {fault.state.value:<7}  {fault.code}  "
        f"({fault.protocol}, bus {fault.bus}, source {fault.source:#x}, report {entry.report_id})"
    )


def _from_us(ts_us: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ts_us / 1_000_000, UTC)
    except (OverflowError, ValueError, OSError):
        return None  # a time no calendar shows: print it as unknown


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def _retention(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with TenantRegistry(settings) as registry:
        reports = enforce_retention(settings, registry, tenants=args.tenant)
    failed = 1 if any(r.error is not None for r in reports) else 0
    if args.json:
        print(json.dumps({"tenants": [dataclasses.asdict(r) for r in reports]}, indent=2))
        return failed
    for r in reports:
        if r.error is not None:
            print(f"{r.tenant}: failed: {r.error}")
            continue
        kept = [k for k, v in r.cutoffs.items() if v is None]
        print(
            f"{r.tenant}: {r.samples_expired:,} raw samples folded into {r.minutes_merged:,} "
            f"minutes; expired {r.aggregates_expired:,} minutes, {r.events_expired:,} events, "
            f"{r.trips_expired:,} trips ({r.seconds:.2f} s)"
            + (f"; kept for ever: {', '.join(kept)}" if kept else "")
        )
    return failed
