"""``telehub bench recommend``: latency of the recommendation API at a fixed request rate.

The API runs in a ``spawn``-ed child process (one uvicorn process, uvloop and
httptools, its access log on as in production) with a synthetic catalog of
``--pois`` places (100,000 by default) generated in memory from a seed and
spread uniformly over ``--area``: ``central-europe`` (Germany, Denmark and
the Benelux, about 1M km²: 0.1 place per km², the density of Germany's
public charging points alone) or ``denmark`` (about 1 per km², a stress case
with ten times the candidates per query). This process is the load
generator: an open loop of ``--rate`` requests per second (1,000 by default) over ``--connections``
keep-alive connections (aiohttp) for ``--duration`` seconds after a
``--warmup``. Each request is scheduled at its own instant; its latency runs
from that instant to the end of the answer, so a server falling behind shows
in the figures (no coordinated omission). Bodies are drawn from a set made
from the seed: electric and fuel cars, low and plenty of energy, faults and
due services, exact and coarse positions.

First the same load against ``GET /health`` (the framework's floor: uvicorn,
FastAPI, our middleware, no ranking), then ``--repeats`` runs of the
recommendation route. It reports the medians over the repeats of the achieved
rate and latency p50/p90/p99, the worst max, all errors (any answer but 200,
and failed connections), CPU time per request of the server and of the
generator, each repeat, the baseline, and the machine's load average (the
generator and whatever else runs share the cores). ``--json`` prints one JSON
object with ``rps``, ``p50_ms``, ``p99_ms``, ``errors`` and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import secrets
import sys
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import numpy as np

from cloud.recommend.catalog import Catalog, Connector, Poi, PoiKind
from cloud.recommend.hours import ALWAYS_OPEN, parse_hours
from cloud.runtime import run_fast

__all__ = ["BenchResult", "register", "run", "synthetic_catalog"]

_TENANT = "bench"
_BRAND = "Bench Motors"
#: (south, north, west, east) of each area the places and request positions lie in.
AREAS = {
    "central-europe": (47.3, 57.7, 3.0, 15.0),
    "denmark": (54.6, 57.7, 8.1, 12.6),
}
_START_TIMEOUT = 120.0
_EXIT_OK = 0
_EXIT_ERROR = 1


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured run of the load against one route."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    requests: int
    duration_s: float
    server_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float
    load_average: float


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Medians over the repeats of the recommendation route, each repeat, and the baseline."""

    rps: float
    target_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    requests: int
    server_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float
    catalog_pois: int
    area: str
    connections: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    cpus: int
    repeats: list[Phase]
    #: ``GET /health`` at the same rate in the same server: the framework's floor.
    baseline: Phase | None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "recommend",
        help="recommendation API latency at a fixed rate, 100,000-place catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second (1000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per repeat (10)")
    p.add_argument("--repeats", type=int, default=3, help="measured repeats, medians shown (3)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    p.add_argument("--pois", type=int, default=100_000, help="places in the catalog (100000)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--area",
        choices=sorted(AREAS),
        default="central-europe",
        help="where the places lie (default central-europe; see above)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the GET /health baseline phase")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    if min(args.rate, args.duration, args.pois, args.connections, args.repeats) <= 0:
        print(
            "telehub: error: --rate, --duration, --repeats, --pois and --connections "
            "must be positive",
            file=sys.stderr,
        )
        return 2
    result = run(
        rate=args.rate,
        duration=args.duration,
        repeats=args.repeats,
        warmup=args.warmup,
        pois=args.pois,
        connections=args.connections,
        seed=args.seed,
        area=args.area,
        baseline=not args.no_baseline,
    )
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        _print(result)
    return _EXIT_OK if result.errors == 0 else _EXIT_ERROR


def _print(result: BenchResult) -> None:
    print(
        f"POST /v1/recommendations at {result.target_rps:.0f} req/s, {result.catalog_pois:,} "
        f"places ({result.area}), {result.connections} connections; medians of "
        f"{len(result.repeats)} repeats:\n"
        f"  {result.rps:.0f} req/s served, latency p50 {result.p50_ms:.2f} ms, "
        f"p90 {result.p90_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms; "
        f"errors {result.errors} of {result.requests}\n"
        f"  CPU per request: server {result.server_cpu_ms_per_request} ms, load generator "
        f"{result.client_cpu_ms_per_request} ms"
    )
    for number, phase in enumerate(result.repeats, start=1):
        print(f"  repeat {number}: {_line(phase)}")
    if result.baseline is not None:
        print(f"GET /health baseline: {_line(result.baseline)}")
    print(
        f"load average {result.load_before[0]:.2f} before, {result.load_after[0]:.2f} after "
        f"({result.cpus} CPUs, shared by the server, the generator and anything else running)"
    )


def _line(phase: Phase) -> str:
    return (
        f"{phase.rps:.0f} req/s, p50 {phase.p50_ms:.2f} ms, p99 {phase.p99_ms:.2f} ms, "
        f"max {phase.max_ms:.1f} ms, errors {phase.errors}, server CPU "
        f"{phase.server_cpu_ms_per_request} ms/request, load {phase.load_average:.2f}"
    )


def run(
    *,
    rate: float,
    duration: float,
    warmup: float,
    pois: int,
    connections: int,
    seed: int,
    repeats: int = 1,
    area: str = "central-europe",
    baseline: bool = False,
) -> BenchResult:
    """One benchmark: start the server, drive the load (baseline, then repeats), stop it."""
    api_key = secrets.token_urlsafe(24)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_child,
        args=(child, api_key, pois, seed, area),
        name="telehub-bench-recommend",
        daemon=True,
    )
    process.start()
    child.close()
    try:
        if not parent.poll(_START_TIMEOUT):
            raise RuntimeError("the API process did not start in time")
        status, value = parent.recv()
        if status != "ok":
            raise RuntimeError(f"the API process failed: {value}")
        load = _Load(int(value), api_key, process.pid, rate, warmup, connections)
        load_before = os.getloadavg()
        floor = load.phase("/health", None, duration) if baseline else None
        bodies = _bodies(seed, area)
        phases = [load.phase("/v1/recommendations", bodies, duration) for _ in range(repeats)]
        load_after = os.getloadavg()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(15)
        if process.is_alive():
            process.terminate()
            process.join(15)
        parent.close()

    def median(values: list[float]) -> float:
        return round(float(np.median(values)), 3)

    cpus = [p.server_cpu_ms_per_request for p in phases]
    return BenchResult(
        rps=median([p.rps for p in phases]),
        target_rps=rate,
        p50_ms=median([p.p50_ms for p in phases]),
        p90_ms=median([p.p90_ms for p in phases]),
        p99_ms=median([p.p99_ms for p in phases]),
        max_ms=max(p.max_ms for p in phases),
        errors=sum(p.errors for p in phases),
        requests=sum(p.requests for p in phases),
        server_cpu_ms_per_request=None if None in cpus else median(cpus),  # type: ignore[arg-type]
        client_cpu_ms_per_request=median([p.client_cpu_ms_per_request for p in phases]),
        catalog_pois=pois,
        area=area,
        connections=connections,
        load_before=load_before,
        load_after=load_after,
        cpus=os.cpu_count() or 1,
        repeats=phases,
        baseline=floor,
    )


# ---------------------------------------------------------------- the load


@dataclass(frozen=True, slots=True)
class _Load:
    port: int
    api_key: str
    server_pid: int | None
    rate: float
    warmup: float
    connections: int

    def phase(self, path: str, bodies: list[bytes] | None, duration: float) -> Phase:
        """Drive ``path`` (POST ``bodies`` in turn, or GET) for warm-up plus ``duration``."""
        # The generator's own garbage-collector passes would stall its schedule and
        # count as server latency: everything built so far is left out of them.
        gc.collect()
        gc.freeze()
        cpu_before = _cpu_seconds(self.server_pid)
        client_before = time.process_time()
        latencies, errors, measured = run_fast(self._drive(path, bodies, duration))
        cpu_after = _cpu_seconds(self.server_pid)
        client = time.process_time() - client_before
        # Both include the warm-up's requests: CPU is sampled around the whole phase.
        total = round(self.rate * (duration + self.warmup))
        done = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
        server = None
        if cpu_before is not None and cpu_after is not None:
            server = round((cpu_after - cpu_before) * 1000 / total, 3)
        return Phase(
            rps=round((len(latencies) + errors) / measured, 1),
            p50_ms=round(float(np.percentile(done, 50)), 3),
            p90_ms=round(float(np.percentile(done, 90)), 3),
            p99_ms=round(float(np.percentile(done, 99)), 3),
            max_ms=round(float(done.max()), 3),
            errors=errors,
            requests=len(latencies) + errors,
            duration_s=round(measured, 3),
            server_cpu_ms_per_request=server,
            client_cpu_ms_per_request=round(client * 1000 / total, 3),
            load_average=os.getloadavg()[0],
        )

    async def _drive(
        self, path: str, bodies: list[bytes] | None, duration: float
    ) -> tuple[list[float], int, float]:
        """(latencies in s of the measured 200s, errors among the measured, seconds from the
        first measured request's instant to the last measured answer)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        headers = {"X-API-Key": self.api_key, "Content-Type": "application/json"}
        latencies: list[float] = []
        errors = 0
        last_answer = 0.0
        connector = aiohttp.TCPConnector(limit=self.connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(body: bytes | None, due: float, counted: bool) -> None:
                nonlocal errors, last_answer
                method = "GET" if body is None else "POST"
                try:
                    async with session.request(method, url, data=body, headers=headers) as answer:
                        await answer.read()
                        ok = answer.status == 200
                except aiohttp.ClientError:
                    ok = False
                if counted:
                    now = time.perf_counter()
                    last_answer = max(last_answer, now)
                    if ok:
                        latencies.append(now - due)
                    else:
                        errors += 1

            tasks: set[asyncio.Task[None]] = set()
            # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
            start = time.perf_counter() + 0.05
            total = round(self.rate * (self.warmup + duration))
            skip = round(self.rate * self.warmup)
            for i in range(total):
                due = start + i / self.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = None if bodies is None else bodies[i % len(bodies)]
                task = asyncio.create_task(one(body, due, i >= skip))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
        return latencies, errors, max(last_answer - (start + skip / self.rate), 1e-9)


def _bodies(seed: int, area: str, count: int = 2000) -> list[bytes]:
    south, north, west, east = AREAS[area]
    rng = random.Random(seed + 1)
    bodies = []
    for i in range(count):
        electric = rng.random() < 0.5
        body: dict[str, Any] = {
            "token": f"{i:032x}",
            "position": {
                "lat": rng.uniform(south + 0.3, north - 0.3),
                "lon": rng.uniform(west + 0.3, east - 0.3),
                "precision": "exact" if rng.random() < 0.7 else "coarse",
            },
            "energy": "electric" if electric else "fuel",
            "level_pct": round(rng.uniform(3, 90), 1),
            "range_km": round(rng.uniform(15, 400), 1),
            "local_time": "2026-12-07T14:05:00+01:00",
            "limit": 5,
        }
        if electric:
            body["connectors"] = rng.choice([["ccs"], ["ccs", "type2"], ["chademo"], ["type2"]])
        roll = rng.random()
        if roll < 0.15:
            body["faults"] = [{"code": "P0301", "severity": "critical"}]
        elif roll < 0.3:
            body["maintenance"] = "due"
        bodies.append(json.dumps(body).encode())
    return bodies


def _cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU seconds of a process (Linux), None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- the catalog and the server


def synthetic_catalog(count: int, seed: int, area: str = "central-europe") -> Catalog:
    """``count`` made-up places over ``area``: 40% chargers, 25% fuel, 2% service, rest
    parking and others; the same seed gives the same catalog."""
    south, north, west, east = AREAS[area]
    rng = np.random.default_rng(seed)
    lats = rng.uniform(south, north, count)
    lons = rng.uniform(west, east, count)
    rolls = rng.random(count)
    powers = rng.choice([11.0, 22.0, 50.0, 150.0, 300.0], count)
    prices = rng.uniform(3.0, 6.0, count)
    part_time = parse_hours("Mo-Su 06:00-23:00")
    plugs = [
        frozenset({Connector.CCS, Connector.TYPE2}),
        frozenset({Connector.CCS}),
        frozenset({Connector.TYPE2}),
        frozenset({Connector.CCS, Connector.CHADEMO}),
    ]
    pois = []
    for i in range(count):
        roll = float(rolls[i])
        base = Poi(
            f"p{i:06d}",
            PoiKind.OTHER,
            f"place {i}",
            float(lats[i]),
            float(lons[i]),
            hours=ALWAYS_OPEN if i % 5 else part_time,
        )
        if roll < 0.40:
            poi = replace(
                base,
                kind=PoiKind.CHARGING,
                connectors=plugs[i % 4],
                power_kw=float(powers[i]),
                price=round(float(prices[i]), 2),
            )
        elif roll < 0.65:
            poi = replace(base, kind=PoiKind.FUEL, price=round(float(prices[i]) + 9, 2))
        elif roll < 0.67:
            poi = replace(
                base,
                kind=PoiKind.SERVICE_CENTRE if i % 2 else PoiKind.DEALER,
                brand=_BRAND if i % 3 else "Independent",
            )
        elif roll < 0.92:
            poi = replace(base, kind=PoiKind.PARKING)
        else:
            poi = base
        pois.append(poi)
    return Catalog.build(pois, ())


def _child(conn: Connection, api_key: str, pois: int, seed: int, area: str) -> None:
    try:
        run_fast(_serve(conn, api_key, pois, seed, area))
    except Exception as exc:  # reported to the parent, which raises it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _serve(conn: Connection, api_key: str, pois: int, seed: int, area: str) -> None:
    # Imported here: only the child serves.
    import logging

    from cloud.recommend.app import create_app
    from cloud.recommend.config import RecommendSettings, hash_api_key
    from cloud.recommend.server import RecommendServer
    from cloud.recommend.service import RecommendService
    from cloud.runtime import freeze_long_lived

    # The access log on, written nowhere: its cost is part of what is measured.
    logging.getLogger("telehub.recommend.access").setLevel(logging.INFO)
    logging.getLogger("telehub.recommend.access").addHandler(logging.NullHandler())
    logging.getLogger("telehub.recommend.access").propagate = False
    settings = RecommendSettings.model_validate(
        {
            "tenants": {
                _TENANT: {
                    "catalog_dir": ".",
                    "api_keys": {"load": hash_api_key(api_key)},
                    "pseudonym_key": secrets.token_urlsafe(32),
                    "brand": _BRAND,
                }
            }
        }
    )
    service = RecommendService(settings, {_TENANT: synthetic_catalog(pois, seed, area)})
    app = create_app(settings, service=service)
    freeze_long_lived()  # as telehub recommend serve does
    async with RecommendServer(app) as server:
        conn.send(("ok", server.port))
        await asyncio.to_thread(conn.recv)
