"""``telehub bench crm``: latency of the dealer's vehicle-health list at a fixed request rate.

One run makes a scratch database on the PostgreSQL server (``--database-url``,
dropped afterwards) and fills it as one tenant's store: ``--vehicles`` vehicles
(CRM records, enrolled telemetry vehicles, a health score each) with a grant to
one dealer and the owner's consent, and the dealer's API key. The real CRM
(uvicorn on uvloop, the app of ``telehub crm serve``) runs in a child process
on loopback.

The load generator, in this process, sends ``--rate`` requests per second for
``--duration`` seconds (after one second of warm-up), open loop: request *i*
leaves at ``start + i/rate`` whatever the answers before it did, and its
latency is counted from that planned time, so a server that falls behind is
seen as slow rather than hiding it (no coordinated omission). Each request asks
a page of ``--page`` vehicles at a random offset, with the dealer's key: the
key check, the grant and consent evaluation in SQL, the join with the health
scores and the audit row are all in the measured path. The generator shares
the machine (and its cores) with the server and PostgreSQL.

The measured run is repeated ``--repeats`` times on one server; the figures
are the medians. The baseline, in the same run on the same data, is the
reference path of the list (``health_pool_size=0``: SQLAlchemy in the thread
pool, the rows serialised by pydantic, as on SQLite), at the same rate.
CPU per request is given for the server, for PostgreSQL (every ``postgres``
process of this machine) and for the generator.

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
import statistics
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
from cloud.runtime import run_fast
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
_PATH = "/v1/vehicles/health"


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
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (default: 10)")
    p.add_argument("--repeats", type=int, default=3, help="measured runs (default: 3)")
    p.add_argument("--page", type=int, default=50, help="vehicles per page (default: 50)")
    p.add_argument(
        "--pool-size",
        type=int,
        default=CrmSettings.model_fields["health_pool_size"].default,
        help="connections of the direct path's pool (default: as telehub crm serve)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the reference path's run")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.vehicles < args.page or args.page < 1 or args.page > 200:
            raise BenchError("--page must be 1-200 and --vehicles at least --page")
        if not 0 < args.rate <= 5_000 or not 0 < args.duration <= 600:
            raise BenchError("--rate must be in (0, 5000] and --duration in (0, 600]")
        if not 1 <= args.repeats <= 20 or not 1 <= args.pool_size <= 64:
            raise BenchError("--repeats must be 1-20 and --pool-size 1-64")
        summary = bench(args, console)
    except BenchError as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    healthy = (
        summary["errors"] == 0 and summary["audit_rows_missing"] == 0 and summary["paths_as_named"]
    )
    return 0 if healthy else 1


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
        runs, answered = _measure(args, cloud, key, args.pool_size, args.repeats, "direct", console)
        baseline: dict[str, Any] | None = None
        if not args.no_baseline:
            reference, more = _measure(args, cloud, key, 0, 1, "reference", console)
            baseline, answered = reference[0], answered + more
        audit_rows = _audit_rows(cloud)
    summary = _median_of(runs)
    summary.update(
        runs=runs,
        baseline=baseline,
        ratios=_ratios(summary, baseline),
        audit_rows=audit_rows,
        # Every answered request, warm-ups included, must have left its audit row.
        audit_rows_missing=answered - audit_rows,
        # Each run measured the path it names: the direct one on its pool, the
        # reference one without (a misconfigured run would compare a path with itself).
        paths_as_named=all(run["health_pool_connections"] > 0 for run in runs)
        and (baseline is None or baseline["health_pool_connections"] == 0),
        vehicles=args.vehicles,
        page=args.page,
        target_rps=args.rate,
        duration_s=args.duration,
        health_pool_size=args.pool_size,
        database="PostgreSQL (scratch database, dropped after the run)",
        load_average=round(os.getloadavg()[0], 2),
    )
    return summary


def _measure(
    args: argparse.Namespace,
    cloud: CloudSettings,
    key: str,
    pool_size: int,
    repeats: int,
    label: str,
    console: Console,
) -> tuple[list[dict[str, Any]], int]:
    """``repeats`` measured runs against a CRM serving the list with ``pool_size``
    (0: the reference path); also how many requests were answered with 200."""
    port = _free_port()
    crm = CrmSettings(
        listen=f"127.0.0.1:{port}", token_secret=_SECRET, grace_seconds=1,
        health_pool_size=pool_size,
    )  # fmt: skip
    child = multiprocessing.get_context("spawn").Process(
        target=_serve_child, args=(crm, cloud), daemon=True
    )
    child.start()
    try:
        assert child.pid is not None
        dsn = str(cloud.tenants[_TENANT].database_url).replace("+psycopg", "", 1)
        generator = _Generator(args, f"http://127.0.0.1:{port}", key, child.pid, dsn)
        return run_fast(generator.runs(repeats, label, console)), generator.answered
    finally:
        child.terminate()
        child.join(10)


def _serve_child(crm: CrmSettings, cloud: CloudSettings) -> None:
    from cloud.runtime import freeze_long_lived
    from crm.server import serve

    # As ``telehub crm serve`` runs: on uvloop, the startup heap frozen once listening.
    run_fast(serve(crm, cloud, on_started=lambda _server: freeze_long_lived()))


class _Generator:
    """The open-loop load of one server, and what it cost each process."""

    def __init__(self, args: argparse.Namespace, base: str, key: str, pid: int, dsn: str) -> None:
        self._dsn = dsn
        self._args = args
        self._base = base
        self._key = key
        self._pid = pid
        self._rng = random.Random(11)
        self.answered = 0

    async def runs(self, repeats: int, label: str, console: Console) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self._key}"}
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(self._base, connector=connector, headers=headers) as s:
            await _wait_ready(s)
            await self._phase(s, 1.0)  # warm-up: connections, caches, prepared statements
            results = []
            for number in range(1, repeats + 1):
                console.print(f"bench: {label} path, run {number}/{repeats} …")
                results.append(await self._measured(s))
                console.print(
                    f"bench: {label} path, run {number}/{repeats}: "
                    f"p50 {results[-1]['p50_ms']} ms, p99 {results[-1]['p99_ms']} ms, "
                    f"{results[-1]['errors']} errors"
                )
        return results

    async def _measured(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        server, before, client = _cpu_seconds(self._pid), _postgres_cpu(), time.process_time()
        latencies, errors, elapsed = await self._phase(session, self._args.duration)
        server = _cpu_seconds(self._pid) - server
        postgres = _postgres_cpu().since(before)
        client = time.process_time() - client
        latencies.sort()
        n = max(1, len(latencies))
        return {
            "requests": len(latencies),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(_quantile(latencies, 0.50) * 1000, 2),
            "p99_ms": round(_quantile(latencies, 0.99) * 1000, 2),
            "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
            "errors": len(errors),
            "error_kinds": sorted(set(errors)),
            "server_cpu_ms_per_request": round(server * 1000 / n, 3),
            "postgres_cpu_ms_per_request": None
            if postgres is None
            else round(postgres * 1000 / n, 3),
            "client_cpu_ms_per_request": round(client * 1000 / n, 3),
            # The run's own check of the path it measured: the direct path holds pool
            # connections (named telehub-crm-health-*), the reference path none.
            "health_pool_connections": await asyncio.to_thread(_pool_connections, self._dsn),
        }

    async def _phase(
        self, session: aiohttp.ClientSession, seconds: float
    ) -> tuple[list[float], list[str], float]:
        # Each request is sent at its planned time by this one loop (thousands of tasks
        # made up front would delay the first ones by the time it takes to make them);
        # one sent late is still timed from its plan.
        latencies: list[float] = []
        errors: list[str] = []
        rate = self._args.rate
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for i in range(int(seconds * rate)):
                planned = start + i / rate
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(self._one(session, planned, latencies, errors))
        return latencies, errors, time.perf_counter() - start

    async def _one(
        self,
        session: aiohttp.ClientSession,
        planned: float,
        latencies: list[float],
        errors: list[str],
    ) -> None:
        page = self._args.page
        after = self._rng.randint(0, self._args.vehicles - page)
        try:
            async with session.get(_PATH, params={"limit": page, "after": after}) as reply:
                body = await reply.read()
                if reply.status != 200:
                    errors.append(f"HTTP {reply.status}")
                else:
                    self.answered += 1
                    if len(json.loads(body)["items"]) != page:
                        errors.append("short page")
        except aiohttp.ClientError as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - planned)


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


def _pool_connections(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'telehub-crm-health-%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _audit_rows(cloud: CloudSettings) -> int:
    with TenantRegistry(cloud) as registry:
        engine = registry.store(_TENANT).engine
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _PostgresCpu:
    """CPU seconds of every ``postgres`` process of this machine, at one moment."""

    def __init__(self, seconds: dict[int, float]) -> None:
        self.seconds = seconds

    def since(self, earlier: _PostgresCpu) -> float | None:
        """CPU spent since ``earlier`` by the processes alive at both moments; ``None``
        when none is visible (a server on another machine, another user's /proc)."""
        both = self.seconds.keys() & earlier.seconds.keys()
        if not both:
            return None
        return sum(self.seconds[pid] - earlier.seconds[pid] for pid in both)


def _postgres_cpu() -> _PostgresCpu:
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                seconds[int(entry.name)] = _cpu_seconds(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return _PostgresCpu(seconds)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


_MEDIAN_FIGURES = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request",
                   "postgres_cpu_ms_per_request", "client_cpu_ms_per_request")  # fmt: skip


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' medians, with their sums of requests and errors and their worst max."""
    summary: dict[str, Any] = {
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": sorted({kind for r in runs for kind in r["error_kinds"]}),
        "max_ms": max((r["max_ms"] for r in runs if r["max_ms"] is not None), default=None),
    }
    for name in _MEDIAN_FIGURES:
        values = [r[name] for r in runs if r[name] is not None]
        summary[name] = round(statistics.median(values), 3) if values else None
    return summary


def _ratios(direct: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, float | None]:
    """How many times the reference path's figure the direct path's is (higher: better)."""
    names = ("p50_ms", "p99_ms", "server_cpu_ms_per_request", "postgres_cpu_ms_per_request")
    ratios: dict[str, float | None] = {}
    for name in names:
        ours = direct.get(name)
        theirs = None if baseline is None else baseline.get(name)
        ratios[f"{name}_baseline_over_direct"] = (
            round(theirs / ours, 2) if ours and theirs is not None else None
        )
    return ratios


def print_summary(s: dict[str, Any], console: Console) -> None:
    grid = Table(title="telehub bench crm: GET /v1/vehicles/health (dealer key, PostgreSQL)")
    grid.add_column("figure")
    runs = s["runs"]
    for number in range(1, len(runs) + 1):
        grid.add_column(f"run {number}", justify="right")
    grid.add_column("median", justify="right")
    baseline = s["baseline"]
    if baseline is not None:
        grid.add_column("reference path", justify="right")
        grid.add_column("ratio", justify="right")
    for name in ("rps", "p50_ms", "p99_ms", "max_ms", "errors", "server_cpu_ms_per_request",
                 "postgres_cpu_ms_per_request", "client_cpu_ms_per_request"):  # fmt: skip
        row = [name, *(str(r[name]) for r in runs), str(s[name])]
        if baseline is not None:
            ratio = s["ratios"].get(f"{name}_baseline_over_direct")
            row += [str(baseline[name]), "" if ratio is None else f"{ratio}x"]
        grid.add_row(*row)
    console.print(grid)
    console.print(
        f"{s['vehicles']:,} vehicles, pages of {s['page']}, {s['target_rps']:g} requests/s "
        f"for {s['duration_s']:g} s per run; {s['audit_rows']:,} audit rows "
        f"({s['audit_rows_missing']} missing); load average {s['load_average']}"
    )
