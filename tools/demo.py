"""``telehub demo``: the whole pipeline on the bundled real recordings, on loopback.

Starts the cloud gateway with the embedded default (one SQLite file per tenant
in a temporary folder), enrolls two vehicles, replays a 545 s passenger-car drive
and a J1939 truck recording through the real agent as fast as possible, waits
until every batch is acknowledged, then reads the tenant's store back and prints
a summary (``--json``: one JSON object). The rules then run over the stored
batches and their events reach the dealer CRM, where the truck's fault codes
open a service lead at the owner's dealer (``tools.demo_crm``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.auth import issue_token
from cloud.config import CloudSettings, TenantSettings
from cloud.server import start_gateway
from cloud.store import TenantRegistry, TenantStore
from tools.demo_crm import run_crm
from tools.demo_recommend import end_of_drive_suggestions
from vehicle_agent.app import Agent, AgentReport, outbox_or_buffer
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.pending import OverflowPolicy
from vehicle_agent.sources import LogSource

TENANT = "demo-motors"


@dataclass(frozen=True, slots=True)
class Recording:
    vehicle_id: str
    title: str
    log: str
    dbcs: tuple[DbcSpec, ...]
    highlights: tuple[str, ...]  # signals shown in the summary


def demo_data() -> Path:
    return Path(str(resources.files("tools") / "demo_data"))


def log_and_dbcs(
    log: Path | None, dbcs: Sequence[Path], error: type[Exception]
) -> tuple[Path, tuple[DbcSpec, ...]]:
    """A tool's ``--log`` and ``--dbc`` files, or the bundled drive with its DBC.

    Each DBC decodes a bus named after its file. Bad arguments raise *error*
    (the tool's own error class) with the reason.
    """
    if log is None:
        if dbcs:
            raise error("--dbc goes with --log (the bundled recording has its own DBC)")
        drive = demo_data() / "drive-gnss"
        return drive / "drive_545s.MF4", (DbcSpec(drive / "canmod-gps.dbc", bus="gnss"),)
    if not dbcs:
        raise error("--log needs at least one --dbc")
    for path in (log, *dbcs):
        if not path.is_file():
            raise error(f"no such file: {path}")
    return log, tuple(DbcSpec(path, bus=path.stem) for path in dbcs)


def recordings(root: Path) -> tuple[Recording, ...]:
    truck = root / "truck-j1939"
    return (
        Recording(
            vehicle_id="DEMO-CAR-0001",
            title="passenger car, 545 s drive with GNSS/IMU",
            log=str(root / "drive-gnss" / "drive_545s.MF4"),
            dbcs=(DbcSpec(root / "drive-gnss" / "canmod-gps.dbc", bus="gnss"),),
            highlights=(
                "Speed",
                "Latitude",
                "Longitude",
                "Altitude",
                "Satellites",
                "FixType",
                "DistanceTotal",
            ),
        ),
        Recording(
            vehicle_id="DEMO-TRUCK-0001",
            title="J1939 truck, 127 s idling",
            log=str(truck / "truck_idle_127s.MF4"),
            dbcs=(
                DbcSpec(truck / "CSS-Electronics-SAE-J1939-DEMO.dbc", bus="j1939", channel="1"),
                DbcSpec(truck / "canmod-gps.dbc", bus="gnss", channel="2"),
            ),
            highlights=("EngineSpeed", "WheelBasedVehicleSpeed"),
        ),
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the full pipeline on bundled real recordings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the tenant's SQLite store here (default: a temporary folder, removed after)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    with _data_dir(args.data_dir) as data_dir:
        summary = asyncio.run(run_demo(data_dir, console))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return 0 if summary["samples_stored"] == summary["samples_sent"] else 1


@contextmanager
def _data_dir(requested: Path | None) -> Iterator[Path]:
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        yield requested
        return
    with tempfile.TemporaryDirectory(prefix="telehub-demo-") as tmp:
        yield Path(tmp)


async def run_demo(data_dir: Path, console: Console) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    settings = CloudSettings(
        listen="127.0.0.1:0",
        data_dir=data_dir,
        tenants={TENANT: TenantSettings(token_secret=SecretStr(secret))},
    )
    registry = TenantRegistry(settings)
    vehicles: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        store = registry.store(TENANT)
        async with await start_gateway(settings, registry) as gateway:
            for rec in recordings(demo_data()):
                store.enroll_vehicle(rec.vehicle_id)
                token = issue_token(TENANT, rec.vehicle_id, settings.tenants[TENANT].token_secret)
                outbox = data_dir / "agents" / rec.vehicle_id / "outbox.sqlite"
                report = await _replay(rec, token, gateway.target, outbox, console)
                vehicles.append(_vehicle_summary(rec, report, store))
        crm = run_crm(registry, TENANT, [v["vehicle_id"] for v in vehicles])
        elapsed = time.monotonic() - started
        car = recordings(demo_data())[0].vehicle_id
        cache = data_dir / "agents" / car / "suggestions.json"
        suggestions = await end_of_drive_suggestions(store, car, cache)
    finally:
        registry.close()
    return {**_summary(vehicles, elapsed, data_dir), "crm": crm, "suggestions": suggestions}


async def _replay(
    rec: Recording, token: str, target: str, outbox: Path, console: Console
) -> AgentReport:
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,} frames"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"{rec.vehicle_id}: {rec.title}", total=None)
        agent = Agent(
            vehicle_id=rec.vehicle_id,
            token=token,
            gateway=target,
            decoder=Decoder(rec.dbcs),
            source=LogSource(Path(rec.log)),
            queue=outbox_or_buffer(
                outbox, max_bytes=256 * 1024 * 1024, policy=OverflowPolicy.BLOCK
            ),
            progress=lambda n: progress.update(task, completed=n),
        )
        try:
            return await agent.run(drain_timeout=120)
        finally:
            agent.queue.close()


def _vehicle_summary(rec: Recording, report: AgentReport, store: TenantStore) -> dict[str, Any]:
    latest = {v.signal: v for v in store.latest(rec.vehicle_id)}
    return {
        "vehicle_id": rec.vehicle_id,
        "recording": Path(rec.log).name,
        "title": rec.title,
        "samples_stored": store.count_samples(rec.vehicle_id),
        "agent": asdict(report),
        "latest": {
            name: {
                "value": latest[name].value,
                "unit": latest[name].unit,
                "label": latest[name].label,
                "message": latest[name].message,
                "timestamp_us": latest[name].ts_us,
            }
            for name in rec.highlights
            if name in latest
        },
    }


def _summary(vehicles: list[dict[str, Any]], elapsed: float, data_dir: Path) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(v["agent"][key]) for v in vehicles)

    skipped: dict[str, int] = {}
    for v in vehicles:
        for reason, n in v["agent"]["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    frames = total("frames_read")
    return {
        "tenant": TENANT,
        "store": str(data_dir / f"{TENANT}.db"),
        "frames_read": frames,
        "frames_decoded": total("frames_decoded"),
        "frames_skipped": skipped,
        "samples_decoded": total("samples_decoded"),
        "samples_sent": total("samples_sent"),
        "samples_stored": sum(int(v["samples_stored"]) for v in vehicles),
        "batches": total("batches"),
        "elapsed_seconds": round(elapsed, 3),
        "frames_per_second": round(frames / elapsed, 1) if elapsed else None,
        "latest": {
            k: {"vehicle_id": v["vehicle_id"], **x}
            for v in vehicles
            for k, x in v["latest"].items()
        },
        "vehicles": vehicles,
    }


def print_summary(s: dict[str, Any], console: Console) -> None:
    ok = s["samples_stored"] == s["samples_sent"]
    console.print()
    console.rule("[bold]telehub demo")
    t = Table(show_header=False, box=None, padding=(0, 2))
    t.add_row("frames read", f"{s['frames_read']:,}")
    t.add_row("frames decoded", f"{s['frames_decoded']:,}")
    skipped = ", ".join(
        f"{n:,} {reason.replace('_', ' ')}" for reason, n in s["frames_skipped"].items() if n
    )
    t.add_row("frames skipped", skipped or "none")
    t.add_row("samples sent", f"{s['samples_sent']:,} in {s['batches']:,} batches")
    t.add_row(
        "samples stored",
        f"{s['samples_stored']:,}" + ("  [green]all stored[/]" if ok else "  [red]MISMATCH[/]"),
    )
    t.add_row("end to end", f"{s['elapsed_seconds']:.1f} s, {s['frames_per_second']:,.0f} frames/s")
    t.add_row("store", s["store"])
    console.print(t)
    for v in s["vehicles"]:
        a = v["agent"]
        table = Table(
            title=f"{v['vehicle_id']} — {v['title']} ({v['recording']})", title_justify="left"
        )
        table.add_column("signal")
        table.add_column("latest value", justify="right")
        table.add_column("unit")
        table.add_column("at (UTC)")
        for name, x in v["latest"].items():
            value = x["label"] or f"{x['value']:.6g}"
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(x["timestamp_us"] / 1e6))
            table.add_row(name, value, x["unit"] or "", at)
        console.print()
        console.print(table)
        console.print(
            f"  {a['frames_read']:,} frames, {a['frames_decoded']:,} decoded, "
            f"{a['samples_sent']:,} samples sent, {v['samples_stored']:,} stored, "
            f"ack latency p50 {_ms(a['ack_p50_ms'])} p99 {_ms(a['ack_p99_ms'])}"
        )
        console.print(
            f"  plan {a['plan_version']} (0: every signal), consent {a['consent_version']}, "
            f"{a['evicted_samples']:,} evicted, {a['fault_changes']:,} fault-code changes, "
            f"frames by bus {a['frames_by_bus']}"
        )
    crm = s["crm"]
    console.print()
    events = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in crm["events"].items())
    console.print(f"[bold]rules[/]: {events or 'no events'}")
    console.print(f"[bold]dealer CRM[/] ({crm['dealer']}): {len(crm['leads'])} service lead(s)")
    for lead in crm["leads"]:
        console.print(
            f"  lead {lead['id']} {lead['state']}: {lead['vehicle_id']}, {lead['reason']}"
        )
    if s.get("suggestions"):
        console.print()
        console.print(
            f"[bold]Suggestions at the end of the drive[/] ({s['suggestions']['assumed']})"
        )
        for line in s["suggestions"]["lines"]:
            console.print(f"  {line}", markup=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
