"""``telehub bench crm``: latency of the dealer's vehicle-health list at a fixed request rate.

One run makes a scratch database on the PostgreSQL server (``--database-url``,
dropped afterwards) and fills it as one tenant's store: ``--vehicles`` vehicles
(CRM records, enrolled telemetry vehicles, a health score each) with a grant to
one dealer and the owner's consent, and the dealer's API key. The real CRM
(uvicorn, the app of ``telehub crm serve``) runs in a child process on loopback.

The load generator, in this process, sends ``--rate`` requests per second for
``--duration`` seconds (after one second of warm-up), open loop: request *i*
leaves at ``start + i/rate`` whatever the answers before it did, and its
latency is counted from that planned time, so a server that falls behind is
seen as slow rather than hiding it (no coordinated omission). Each request asks
a page of ``--page`` vehicles at a random offset, with the dealer's key: the
key lookup, the grant and consent evaluation in SQL, the join with the health
scores and the audit row are all in the measured path. The generator shares
the machine (and its cores) with the server and PostgreSQL.

``--json`` prints one JSON object (``rps``, ``p50_ms``, ``p99_ms``,
``errors`` and the details).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select, text

from cloud.config import CloudSettings, TenantSettings
from cloud.store import TenantRegistry
from cloud.store.base import now, table
from cloud.store.models import HealthRow, Vehicle
from crm.auth import Role
from crm.config import CrmSettings
from crm.keys import issue_api_key
from crm.store import CrmStores
from crm.store.base import now_us
from crm.store.records import encode_set
from crm.store.tables import audit_log, consents, grants, vehicles
from tools.bench.ingest import DEFAULT_DATABASE_URL, BenchError, scratch_database

__all__ = ["register", "run"]

_TENANT = "bench"
_SECRET = SecretStr("bench-" + "s" * 40)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "crm",
        help="p50/p99 latency of the dealer's vehicle-health list at a fixed rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("TELEHUB_BENCH_POSTGRES_URL", DEFAULT_DATABASE_URL),
        help="a PostgreSQL server's database to make the scratch database from",
    )
    p.add_argument("--vehicles", type=int, default=10_000, help="(default: 10,000)")
    p.add_argument("--rate", type=float, default=500.0, help="requests/s (default: 500)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured (default: 10)")
    p.add_argument("--page", type=int, default=50, help="vehicles per page (default: 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.vehicles < 1 or args.page < 1 or args.page > 200:
            raise BenchError("--vehicles must be at least 1 and --page 1-200")
        if not 0 < args.rate <= 5_000 or not 0 < args.duration <= 600:
            raise BenchError("--rate must be in (0, 5000] and --duration in (0, 600]")
        summary = bench(args, console)
    except BenchError as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return 0 if summary["errors"] == 0 else 1


def bench(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    with scratch_database(args.database_url) as url:
        cloud = CloudSettings(
            data_dir=Path("."),
            tenants={
                _TENANT: TenantSettings(
                    token_secret=_SECRET,
                    database_url=url.replace("postgresql://", "postgresql+psycopg://", 1),
                )
            },
        )
        console.print(f"bench: filling the scratch store with {args.vehicles:,} vehicles …")
        key = _fill(cloud, args.vehicles)
        port = _free_port()
        crm = CrmSettings(listen=f"127.0.0.1:{port}", token_secret=_SECRET, grace_seconds=1)
        child = multiprocessing.get_context("spawn").Process(
            target=_serve_child, args=(crm, cloud), daemon=True
        )
        child.start()
        try:
            console.print("bench: CRM started in a child process; loading …")
            assert child.pid is not None
            result = asyncio.run(_load(args, f"http://127.0.0.1:{port}", key, child.pid))
        finally:
            child.terminate()
            child.join(10)
        result["audit_rows"] = _audit_rows(cloud)
    result.update(
        vehicles=args.vehicles,
        page=args.page,
        target_rps=args.rate,
        duration_s=args.duration,
        database="PostgreSQL (scratch database, dropped after the run)",
        load_average=os.getloadavg()[0],
    )
    return result


def _fill(cloud: CloudSettings, count: int) -> str:
    """The tenant's records: vehicles with health, one dealer granted all, its key."""
    with TenantRegistry(cloud) as registry:
        store = CrmStores(registry).store(_TENANT)
        dealer = store.create_dealer("BENCH", "Bench dealer", [])["id"]
        customer = store.create_customer({"name": "Owner", "email": "o@example.com"})["id"]
        ids = [f"car-{n:06d}" for n in range(count)]
        store.telemetry.enroll_vehicles(ids)
        stamp = now_us()
        rng = random.Random(7)
        with store.engine.begin() as conn:
            pks = {row[0]: row[1] for row in conn.execute(select(Vehicle.vehicle_id, Vehicle.id))}
            conn.execute(insert(table(HealthRow)), [
                {"vehicle_id": pks[v], "score": rng.randint(40, 100), "as_of_us": stamp,
                 "reasons": [{"code": "fault", "points": 10.0, "text": "P0301 active"}],
                 "updated_at": now()}
                for v in ids
            ])  # fmt: skip
            conn.execute(insert(vehicles), [
                {"id": n + 1, "vin": f"BENCH{n:012d}", "telemetry_id": v, "model": "ID.4",
                 "year": 2024, "mileage_km": 1000.0 + n, "preferred_dealer_id": dealer,
                 "created_us": stamp, "version": 1}
                for n, v in enumerate(ids)
            ])  # fmt: skip
            conn.execute(insert(grants), [
                {"dealer_id": dealer, "vehicle_id": n + 1, "purposes": encode_set(["diagnostics"]),
                 "fields": encode_set(["health", "mileage"]), "valid_from_us": 0,
                 "valid_to_us": None, "created_us": stamp}
                for n in range(count)
            ])  # fmt: skip
            conn.execute(insert(consents), [
                {"vehicle_id": n + 1, "customer_id": customer, "purpose": "diagnostics",
                 "dealer_id": None, "valid_from_us": 0, "valid_to_us": None, "source": "bench",
                 "withdrawn_at_us": None, "created_us": stamp}
                for n in range(count)
            ])  # fmt: skip
            if conn.dialect.name == "postgresql":
                # The explicit ids above bypassed the sequence; later inserts need it past them.
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence('crm_vehicles', 'id'), :n)"),
                    {"n": count},
                )
                conn.exec_driver_sql("ANALYZE")
        return issue_api_key(store, _TENANT, role=Role.DEALER, dealer_id=dealer, label="bench").text


def _audit_rows(cloud: CloudSettings) -> int:
    with TenantRegistry(cloud) as registry:
        engine = registry.store(_TENANT).engine
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_child(crm: CrmSettings, cloud: CloudSettings) -> None:
    from crm.server import serve

    asyncio.run(serve(crm, cloud))


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(args: argparse.Namespace, base: str, key: str, pid: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:
        await _wait_ready(session)
        rng = random.Random(11)
        top = max(0, args.vehicles - args.page)

        async def one(planned: float, latencies: list[float], errors: list[str]) -> None:
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
            params = {"limit": str(args.page), "after": str(rng.randint(0, top))}
            try:
                async with session.get("/v1/vehicles/health", params=params) as reply:
                    body = await reply.read()
                    if reply.status != 200 or not body.startswith(b'{"items":[{'):
                        errors.append(f"HTTP {reply.status}")
            except aiohttp.ClientError as exc:
                errors.append(type(exc).__name__)
            latencies.append(time.perf_counter() - planned)

        async def phase(seconds: float) -> tuple[list[float], list[str], float]:
            latencies: list[float] = []
            errors: list[str] = []
            start = time.perf_counter() + 0.05
            total = int(seconds * args.rate)
            async with asyncio.TaskGroup() as group:
                for i in range(total):
                    group.create_task(one(start + i / args.rate, latencies, errors))
            return latencies, errors, time.perf_counter() - start

        await phase(1.0)  # warm-up: connections, caches, the planner
        cpu = _cpu_seconds(pid)
        latencies, errors, elapsed = await phase(args.duration)
        cpu = _cpu_seconds(pid) - cpu
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_quantile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_quantile(latencies, 0.99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "server_cpu_ms_per_request": round(cpu * 1000 / max(1, len(latencies)), 2),
    }


async def _wait_ready(session: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get("/health") as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise BenchError("the CRM did not start within 60 s")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def print_summary(s: dict[str, Any], console: Console) -> None:
    grid = Table(title="telehub bench crm: GET /v1/vehicles/health (dealer key, PostgreSQL)")
    grid.add_column("figure")
    grid.add_column("value", justify="right")
    for name in ("vehicles", "page", "target_rps", "rps", "requests", "p50_ms", "p99_ms",
                 "max_ms", "errors", "server_cpu_ms_per_request", "audit_rows",
                 "load_average"):  # fmt: skip
        grid.add_row(name, str(s[name]))
    console.print(grid)
