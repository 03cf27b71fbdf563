"""``telehub simulate``: a fleet of virtual vehicles streaming to a cloud gateway.

Every vehicle replays a real recording (the bundled 545 s drive by default, or
``--log`` with ``--dbc``) decoded once by the agent's own pipeline: each one
starts at its own point of the recording, moved to the present, and with
``--jitter`` its numeric signals scaled by a factor of its own (seeded). The
fleet streams over the real wire contract, one gRPC stream per vehicle, at the
recording's own pace per vehicle by default, at ``--rate`` samples per second
in total, or as fast as the gateway acknowledges (``--max-rate``).

The vehicles are enrolled in the tenant's store and their tokens signed with
the tenant's secret, both from the cloud's settings on this machine
(``TELEHUB_TENANTS``, ``--data-dir``), as ``telehub cloud enroll`` does; the
gateway at ``--gateway`` must serve that tenant. The run ends after
``--duration`` seconds (or ``--batches`` per vehicle); every vehicle then
waits for the acks of what it sent. Exit 1 when a batch went unacknowledged
or a stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.errors import UnknownTenant
from cloud.store import TenantRegistry
from tools.cli import subcommand_main
from tools.demo import log_and_dbcs
from tools.simulate.client import FleetStats, SimVehicle, run_fleet
from tools.simulate.fleet import Recording, SimulationError, VehicleFeed, load_recording

__all__ = ["main", "register", "run"]

_EXIT_OK = 0
_EXIT_ERROR = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="a fleet of virtual vehicles streaming real recordings to a gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gateway", required=True, help="the gateway's HOST:PORT")
    p.add_argument("--tenant", required=True, help="the tenant the vehicles belong to")
    p.add_argument("--vehicles", type=int, default=10, help="vehicles (default: 10)")
    p.add_argument("--prefix", default="SIM", help="vehicle ids are PREFIX00001… (default: SIM)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="samples per second for the whole fleet")
    pace.add_argument("--max-rate", action="store_true", help="as fast as the gateway acknowledges")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (default: 30)")
    p.add_argument("--batches", type=int, help="batches per vehicle instead of a duration")
    p.add_argument("--log", type=Path, help="the recording (default: the bundled drive)")
    p.add_argument("--dbc", type=Path, action="append", default=[], help="DBC of --log")
    p.add_argument("--batch-samples", type=int, default=5_000, help="(default: 5,000)")
    p.add_argument(
        "--jitter", type=float, default=0.02, help="per-vehicle value spread (default: 0.02)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the variation (default: 0)")
    p.add_argument(
        "--window", type=int, default=1, help="unacknowledged batches per vehicle (default: 1)"
    )
    p.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``telehub simulate`` on its own: *argv* without the command name; returns the exit code."""
    return subcommand_main("simulate", register, argv)


@dataclass(frozen=True, slots=True)
class Fleet:
    recording: Recording
    vehicles: list[SimVehicle]


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        _check(args)
        settings = CloudSettings(**({"data_dir": args.data_dir} if args.data_dir else {}))
        console.print("simulate: decoding the recording …")
        recording = load_recording(
            *log_and_dbcs(args.log, args.dbc, SimulationError), batch_samples=args.batch_samples
        )
        fleet = make_fleet(
            settings, args.tenant, recording, args.vehicles, args.prefix, args.jitter, args.seed
        )
    except SimulationError as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    rate = _rate(args, recording)
    console.print(
        f"simulate: {args.vehicles:,} vehicles to {args.gateway}, "
        + ("as fast as acknowledged" if rate is None else f"{rate:,.0f} samples/s in all")
    )
    stats = _stream(args, fleet, rate, console)
    summary = summarize(args, recording, stats, rate)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    ok = not stats.errors and stats.samples_acked == stats.samples_sent
    return _EXIT_OK if ok else _EXIT_ERROR


def _check(args: argparse.Namespace) -> None:
    if args.vehicles < 1:
        raise SimulationError(f"--vehicles must be at least 1, got {args.vehicles}")
    if args.batches is not None and args.batches < 0:
        raise SimulationError(f"--batches must not be negative, got {args.batches}")
    if args.duration <= 0:
        raise SimulationError(f"--duration must be positive, got {args.duration}")
    if args.rate is not None and args.rate <= 0:
        raise SimulationError(f"--rate must be positive, got {args.rate}")
    if args.window < 1:
        raise SimulationError(f"--window must be at least 1, got {args.window}")


def make_fleet(
    settings: CloudSettings,
    tenant: str,
    recording: Recording,
    count: int,
    prefix: str,
    jitter: float,
    seed: int,
) -> Fleet:
    """Enroll *count* vehicles in *tenant*'s store and give each its feed and token."""
    tenant_settings = settings.tenants.get(tenant)
    if tenant_settings is None:
        raise UnknownTenant(f"tenant {tenant!r} is not configured (TELEHUB_TENANTS)")
    ids = [f"{prefix}{i:05d}" for i in range(1, count + 1)]
    with TenantRegistry(settings) as registry:
        registry.store(tenant).enroll_vehicles(ids)
    start_us = time.time_ns() // 1000
    laps = len(recording.batches)
    vehicles = [
        SimVehicle(
            vehicle_id,
            issue_token(tenant, vehicle_id, tenant_settings.token_secret),
            recording.hello(vehicle_id),
            # Phases spread over the recording: vehicle i starts i/count of the way in.
            VehicleFeed(
                recording, start_us=start_us, phase=i * laps // count, jitter=jitter, seed=seed + i
            ),
        )
        for i, vehicle_id in enumerate(ids)
    ]
    return Fleet(recording, vehicles)


def _rate(args: argparse.Namespace, recording: Recording) -> float | None:
    if args.max_rate:
        return None
    if args.rate is not None:
        return float(args.rate)
    # The recording's own pace, per vehicle.
    per_vehicle = recording.samples / (recording.span_us / 1e6)
    return float(args.vehicles * per_vehicle)


def _stream(
    args: argparse.Namespace, fleet: Fleet, rate: float | None, console: Console
) -> FleetStats:
    duration = None if args.batches is not None else args.duration
    with Progress(
        TextColumn("simulate"),
        BarColumn(),
        TextColumn("{task.fields[acked]:>12,} samples acked · {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("run", total=duration, acked=0, rate=0.0)
        started = time.perf_counter()

        def show(stats: FleetStats) -> None:
            elapsed = time.perf_counter() - started
            progress.update(
                task,
                completed=elapsed if duration else None,
                acked=stats.samples_acked,
                rate=stats.samples_acked / elapsed if elapsed > 0 else 0.0,
            )

        return asyncio.run(
            run_fleet(
                args.gateway,
                fleet.vehicles,
                samples_per_s=rate,
                duration=duration,
                batches=args.batches,
                window=args.window,
                on_progress=show,
            )
        )


def summarize(
    args: argparse.Namespace, recording: Recording, stats: FleetStats, rate: float | None
) -> dict[str, Any]:
    return {
        "gateway": args.gateway,
        "tenant": args.tenant,
        "vehicles": args.vehicles,
        "connected": stats.connected,
        "target_samples_per_s": None if rate is None else round(rate, 1),
        "recording_frames": recording.frames,
        "recording_samples": recording.samples,
        "batches_sent": stats.batches_sent,
        "batches_acked": stats.batches_acked,
        "samples_sent": stats.samples_sent,
        "samples_acked": stats.samples_acked,
        "duplicates": stats.duplicates,
        "wall_seconds": round(stats.wall_seconds, 3),
        "samples_per_s": round(stats.samples_per_s, 1),
        "ack_p50_ms": _ms(stats.percentile_ms(50)),
        "ack_p99_ms": _ms(stats.percentile_ms(99)),
        "errors": dict(stats.errors),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def print_summary(s: dict[str, Any], console: Console) -> None:
    t = Table(title="telehub simulate", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("vehicles connected", f"{s['connected']:,} / {s['vehicles']:,}")
    target = s["target_samples_per_s"]
    t.add_row("target rate", "as fast as acked" if target is None else f"{target:,.0f} samples/s")
    t.add_row("batches sent / acked", f"{s['batches_sent']:,} / {s['batches_acked']:,}")
    t.add_row("samples sent / acked", f"{s['samples_sent']:,} / {s['samples_acked']:,}")
    t.add_row("samples acked per second", f"{s['samples_per_s']:,.0f}")
    t.add_row("ack latency p50 / p99", f"{_fmt(s['ack_p50_ms'])} / {_fmt(s['ack_p99_ms'])} ms")
    t.add_row("errors", ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none")
    console.print(t)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
