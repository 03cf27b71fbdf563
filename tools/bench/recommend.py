"""``telehub bench recommend``: latency of the recommendation API at a fixed request rate.

The API runs in a ``spawn``-ed child process (one uvicorn process, uvloop and
httptools, its access log on as in production) with a synthetic catalog of
``--pois`` places (100,000 by default) generated in memory from a seed and
spread uniformly over ``--area``: ``central-europe`` (Germany, Denmark and
the Benelux, about 1M km²: 0.1 place per km², the density of Germany's
public charging points alone) or ``denmark`` (about 1 per km², a stress case
with ten times the candidates per query). This process is the load generator: an open loop of
``--rate`` requests per second (1,000 by default) over ``--connections``
keep-alive connections (aiohttp) for ``--duration`` seconds after a
``--warmup``. Each request is scheduled at its own instant; its latency runs
from that instant to the end of the answer, so a server falling behind shows
in the figures (no coordinated omission). Bodies are drawn from a set made
from the seed: electric and fuel cars, low and plenty of energy, faults and
due services, exact and coarse positions.

It reports the achieved rate, latency p50/p90/p99/max, errors (any answer
but 200, and failed connections), the server's CPU time per request, and the
machine's load average before and after (the generator shares the machine).
``--json`` prints one JSON object with ``rps``, ``p50_ms``, ``p99_ms``,
``errors`` and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from cloud.recommend.server import run_fast

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
class BenchResult:
    rps: float
    target_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    requests: int
    duration_s: float
    catalog_pois: int
    connections: int
    server_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    cpus: int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "recommend",
        help="recommendation API latency at a fixed rate, 100,000-place catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second (1000)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds measured (15)")
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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.duration <= 0 or args.pois < 1 or args.connections < 1:
        print(
            "telehub: error: --rate, --duration, --pois and --connections must be positive",
            file=sys.stderr,
        )
        return 2
    result = run(
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        pois=args.pois,
        connections=args.connections,
        seed=args.seed,
        area=args.area,
    )
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.rps:.0f} req/s of {result.target_rps:.0f} asked, "
            f"{result.requests} requests over {result.duration_s:.1f} s, "
            f"{result.catalog_pois} places, {result.connections} connections\n"
            f"latency p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms; errors {result.errors}\n"
            f"CPU per request: server {result.server_cpu_ms_per_request} ms, load generator "
            f"{result.client_cpu_ms_per_request} ms; load average "
            f"{result.load_before[0]:.2f} before, {result.load_after[0]:.2f} after "
            f"({result.cpus} CPUs)"
        )
    return _EXIT_OK if result.errors == 0 else _EXIT_ERROR


def run(
    *,
    rate: float,
    duration: float,
    warmup: float,
    pois: int,
    connections: int,
    seed: int,
    area: str = "central-europe",
) -> BenchResult:
    """One benchmark: start the server, drive the load, stop the server."""
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
        port = int(value)
        load_before = os.getloadavg()
        cpu_before = _cpu_seconds(process.pid)
        client_before = time.process_time()
        latencies, errors, measured = run_fast(
            _load(
                port,
                api_key,
                rate=rate,
                duration=duration,
                warmup=warmup,
                connections=connections,
                seed=seed,
                area=area,
            )
        )
        cpu_after = _cpu_seconds(process.pid)
        client_cpu = time.process_time() - client_before
        load_after = os.getloadavg()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(15)
        if process.is_alive():
            process.terminate()
            process.join(15)
        parent.close()
    done = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    # Both include the warm-up's requests: CPU is sampled around the whole load.
    total = round(rate * (duration + warmup))
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = round((cpu_after - cpu_before) * 1000 / total, 3)
    return BenchResult(
        rps=round((len(latencies) + errors) / measured, 1),
        target_rps=rate,
        p50_ms=round(float(np.percentile(done, 50)), 3),
        p90_ms=round(float(np.percentile(done, 90)), 3),
        p99_ms=round(float(np.percentile(done, 99)), 3),
        max_ms=round(float(done.max()), 3),
        errors=errors,
        requests=len(latencies) + errors,
        duration_s=round(measured, 3),
        catalog_pois=pois,
        connections=connections,
        server_cpu_ms_per_request=cpu,
        client_cpu_ms_per_request=round(client_cpu * 1000 / total, 3),
        load_before=load_before,
        load_after=load_after,
        cpus=os.cpu_count() or 1,
    )


# ---------------------------------------------------------------- the load


async def _load(
    port: int,
    api_key: str,
    *,
    rate: float,
    duration: float,
    warmup: float,
    connections: int,
    seed: int,
    area: str,
) -> tuple[list[float], int, float]:
    """(latencies in s of the measured 200s, errors among the measured, seconds from the
    first measured request's instant to the last measured answer)."""
    bodies = _bodies(seed, area)
    url = f"http://127.0.0.1:{port}/v1/recommendations"
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    last_answer = 0.0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, due: float, counted: bool) -> None:
            nonlocal errors, last_answer
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    ok = answer.status == 200
            except aiohttp.ClientError:
                ok = False
            if counted:
                last_answer = max(last_answer, loop.time())
                if ok:
                    latencies.append(loop.time() - due)
                else:
                    errors += 1

        tasks: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        total = round(rate * (warmup + duration))
        skip = round(rate * warmup)
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(bodies[i % len(bodies)], due, i >= skip))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return latencies, errors, max(last_answer - (start + skip / rate), 1e-9)


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
    async with RecommendServer(create_app(settings, service=service)) as server:
        conn.send(("ok", server.port))
        await asyncio.to_thread(conn.recv)
