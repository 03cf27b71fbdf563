"""``telehub bench ingest``: samples per second into PostgreSQL through one gateway process.

One run makes a scratch database on the PostgreSQL server (``--database-url``,
dropped afterwards) and starts the real gateway in a child process with its
tenant store there: migrations, day partitions and the binary COPY per batch,
as in production. A simulated fleet (:mod:`tools.simulate`: the bundled
drive, decoded once into the agent's own 5,000-sample batches) then streams to
it over gRPC on loopback, in four phases:

1. **max**: ``--vehicles`` streams, each with ``--window`` batches in flight,
   as fast as the gateway acknowledges, for ``--duration`` seconds: samples
   acknowledged per second (an ack means committed), the gateway's CPU.
2. **half**: the same fleet paced to half the samples per second of phase 1:
   the ack latency p50 and p99 a gateway gives with headroom.
3. **copy**: the baseline, in this process: the same batches' rows, built
   beforehand with the gateway's own COPY encoding, written by psycopg's
   binary COPY into the same ``samples`` table, one COPY and one commit per
   batch, from as many connections at once as phase 1 has streams, for half
   the duration: rows per second.
4. **streams**: ``--streams`` vehicles connect (hello, catalog, welcome) and
   hold their streams open; the gateway's resident memory before and after
   gives the memory per stream, and how many were held at once is reported.

The load generator shares the machine (and its cores) with the gateway and
PostgreSQL: the load average is reported with each phase. ``--json`` prints
one JSON object (``samples_per_s``, ``copy_rows_per_s``, ``ratio``,
``ack_p50_ms``, ``ack_p99_ms``, ``max_streams``, ``rss_bytes_per_stream`` and
the details).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.domain import SampleColumns
from cloud.store.dialect.postgresql import COPY_SAMPLES, copy_data
from tools.bench.loopback import CloudProcessError, LoopbackCloud
from tools.bench.memory import status_bytes
from tools.demo import log_and_dbcs
from tools.simulate.client import FleetStats, SimVehicle, run_fleet
from tools.simulate.fleet import BatchColumns, Recording, VehicleFeed, load_recording

__all__ = ["DEFAULT_DATABASE_URL", "BenchError", "register", "run"]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
_EXIT_OK = 0
_EXIT_ERROR = 1
#: Seconds the streams phase may take to connect every stream.
_STREAMS_TIMEOUT = 300.0


class BenchError(Exception):
    """The benchmark cannot run as asked (message says why)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ingest",
        help="samples/s into PostgreSQL through one gateway, against raw COPY",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("TELEHUB_BENCH_POSTGRES_URL", DEFAULT_DATABASE_URL),
        help="a PostgreSQL server's database to make the scratch database from "
        f"(default: TELEHUB_BENCH_POSTGRES_URL or {DEFAULT_DATABASE_URL})",
    )
    p.add_argument("--vehicles", type=int, default=8, help="streams of phases 1-2 (default: 8)")
    p.add_argument("--window", type=int, default=2, help="batches in flight each (default: 2)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds a phase (default: 10)")
    p.add_argument("--batch-samples", type=int, default=5_000, help="(default: 5,000)")
    p.add_argument(
        "--streams", type=int, default=10_000, help="streams held at once (default: 10,000)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        for name in ("vehicles", "window", "batch_samples", "streams"):
            if getattr(args, name) < 1:
                raise BenchError(f"--{name.replace('_', '-')} must be at least 1")
        if args.duration <= 0:
            raise BenchError("--duration must be positive")
        summary = bench(args, console)
    except (BenchError, CloudProcessError) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return _EXIT_OK if not summary["errors"] else _EXIT_ERROR


@dataclass(frozen=True, slots=True)
class Phase:
    stats: FleetStats
    gateway_cpu_seconds: float
    load_average: float

    def figures(self) -> dict[str, Any]:
        s = self.stats
        return {
            "vehicles_connected": s.connected,
            "samples_acked": s.samples_acked,
            "batches_acked": s.batches_acked,
            "wall_seconds": round(s.wall_seconds, 3),
            "samples_per_s": round(s.samples_per_s, 1),
            "ack_p50_ms": _round(s.percentile_ms(50)),
            "ack_p99_ms": _round(s.percentile_ms(99)),
            "gateway_cpu_seconds": round(self.gateway_cpu_seconds, 3),
            "samples_per_gateway_cpu_s": round(
                s.samples_acked / self.gateway_cpu_seconds if self.gateway_cpu_seconds else 0.0, 1
            ),
            "load_average_1min": round(self.load_average, 2),
            "errors": dict(s.errors),
        }


def bench(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    console.print("bench: decoding the bundled drive into the agent's batches …")
    log, specs = log_and_dbcs(None, [], BenchError)
    recording = load_recording(log, specs, batch_samples=args.batch_samples)
    with scratch_database(args.database_url) as url, tempfile.TemporaryDirectory() as tmp:
        console.print("bench: starting the gateway (PostgreSQL tenant) in a child process …")
        with LoopbackCloud(Path(tmp), database_url=_sqlalchemy_url(url)) as cloud:
            fleet = _fleet(cloud, recording, "INGEST", args.vehicles)
            # Untimed: catalogs registered, partitions made, caches warm.
            asyncio.run(run_fleet(cloud.target, fleet, batches=1))
            console.print(f"bench: max: {args.vehicles} streams as fast as acked …")
            top = _phase(cloud, lambda: _fleet_run(cloud, fleet, None, args))
            rate = top.stats.samples_per_s / 2
            console.print(f"bench: max {top.stats.samples_per_s:,.0f} samples/s; half: {rate:,.0f}")
            half = _phase(cloud, lambda: _fleet_run(cloud, fleet, rate, args))
            console.print("bench: raw COPY of the same batches …")
            copy = raw_copy(url, cloud, recording, args.duration / 2, args.vehicles)
            console.print(f"bench: streams: connecting {args.streams:,} vehicles …")
            streams = hold_streams(cloud, recording, args.streams, console)
    return summarize(args, recording, top, half, copy, streams)


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new database on *url*'s server for the run (libpq URL), dropped afterwards."""
    import psycopg

    name = f"telehub_bench_{uuid.uuid4().hex[:10]}"
    base = _libpq_url(url)
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"PostgreSQL not reachable at {base}: {exc}") from exc
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq_url(url: str) -> str:
    # SQLAlchemy's spelling (postgresql+psycopg://) to libpq's.
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise BenchError(f"--database-url must be a postgresql:// URL, got {url!r}")
    return f"postgresql://{rest.split('?')[0]}"


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _fleet(cloud: LoopbackCloud, recording: Recording, prefix: str, count: int) -> list[SimVehicle]:
    ids = [f"{prefix}{i:05d}" for i in range(1, count + 1)]
    tokens = cloud.enroll_many(ids)
    start_us = time.time_ns() // 1000
    laps = len(recording.batches)
    return [
        SimVehicle(
            vehicle_id,
            token,
            recording.hello(vehicle_id),
            VehicleFeed(recording, start_us=start_us, phase=i * laps // count),
        )
        for i, (vehicle_id, token) in enumerate(zip(ids, tokens, strict=True))
    ]


def _fleet_run(
    cloud: LoopbackCloud, fleet: list[SimVehicle], rate: float | None, args: argparse.Namespace
) -> FleetStats:
    return asyncio.run(
        run_fleet(
            cloud.target, fleet, samples_per_s=rate, duration=args.duration, window=args.window
        )
    )


def _phase(cloud: LoopbackCloud, work: Callable[[], FleetStats]) -> Phase:
    cpu = _cpu_seconds(cloud.pid)
    stats = work()
    return Phase(stats, _cpu_seconds(cloud.pid) - cpu, os.getloadavg()[0])


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU seconds of process *pid* so far (Linux), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CopyRun:
    rows: int
    batches: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def raw_copy(
    url: str, cloud: LoopbackCloud, recording: Recording, seconds: float, writers: int
) -> CopyRun:
    """The recording's batches COPY'd into ``samples`` for *seconds*, a commit per batch.

    *writers* connections write at once, each from a thread of its own (psycopg
    lets go of the GIL while it waits on the server), as the gateway's streams do.
    """
    import psycopg

    ids = [f"RAWCOPY{i:03d}" for i in range(writers)]
    cloud.enroll_many(ids)
    start_us = time.time_ns() // 1000
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM vehicles WHERE vehicle_id = ANY(%s) ORDER BY vehicle_id", [ids]
        ).fetchall()
    if len(rows) != writers:
        raise BenchError("the raw COPY's vehicles were not enrolled")
    # Built beforehand, as the gateway gets its rows from the wire: two laps a writer.
    work = [
        [
            (copy_data(int(pk), _columns(b, start_us + lap * recording.span_us)), len(b.value))
            for lap in range(2)
            for b in recording.batches
        ]
        for (pk,) in rows
    ]
    done = [(0, 0)] * writers
    barrier = threading.Barrier(writers + 1)

    def write(k: int) -> None:
        with psycopg.connect(url) as conn:
            barrier.wait()
            count = batches = 0
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or batches < 5:
                data, size = work[k][batches % len(work[k])]
                with conn.cursor() as cursor, cursor.copy(COPY_SAMPLES) as copy:
                    copy.write(data)
                conn.commit()
                count += size
                batches += 1
            done[k] = (count, batches)

    threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return CopyRun(sum(c for c, _ in done), sum(b for _, b in done), elapsed)


def _columns(columns: BatchColumns, start_us: int) -> SampleColumns:
    # Store-side signal ids: the catalog index + 1 (samples have no foreign keys).
    return SampleColumns(
        (columns.index + 1).tolist(),
        (columns.offset_us + start_us).tolist(),
        columns.value.tolist(),
    )


def hold_streams(
    cloud: LoopbackCloud, recording: Recording, count: int, console: Console
) -> dict[str, Any]:
    """*count* vehicles connect and hold their streams; the gateway's memory per stream."""
    fleet = _fleet(cloud, recording, "STREAM", count)
    before = status_bytes("VmRSS", Path(f"/proc/{cloud.pid}"))
    held: dict[str, Any] = {}

    def all_in(stats: FleetStats) -> bool:
        done = stats.connected + sum(stats.errors.values()) >= count
        if done and not held:
            held["rss"] = status_bytes("VmRSS", Path(f"/proc/{cloud.pid}"))
            held["connected"] = stats.connected
        return done

    with Progress(
        TextColumn("bench: streams"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("streams", total=count)
        stats = asyncio.run(
            run_fleet(
                cloud.target,
                fleet,
                batches=0,
                duration=_STREAMS_TIMEOUT,
                on_progress=lambda s: progress.update(task, completed=s.connected),
                stop_when=all_in,
            )
        )
    connected = int(held.get("connected", stats.connected))
    after = held.get("rss")
    per_stream = (
        (after - before) / connected if before is not None and after and connected else None
    )
    return {
        "streams_asked": count,
        "max_streams": connected,
        "gateway_rss_before_bytes": before,
        "gateway_rss_held_bytes": after,
        "rss_bytes_per_stream": None if per_stream is None else round(per_stream),
        "connect_seconds": round(stats.wall_seconds, 2),
        "errors": dict(stats.errors),
    }


def summarize(
    args: argparse.Namespace,
    recording: Recording,
    top: Phase,
    half: Phase,
    copy: CopyRun,
    streams: dict[str, Any],
) -> dict[str, Any]:
    samples_per_s = top.stats.samples_per_s
    errors = {
        **{f"max: {k}": v for k, v in top.stats.errors.items()},
        **{f"half: {k}": v for k, v in half.stats.errors.items()},
        **{f"streams: {k}": v for k, v in streams["errors"].items()},
    }
    return {
        "benchmark": "ingest",
        "database": "PostgreSQL (scratch database, dropped after the run)",
        "recording_samples": recording.samples,
        "batch_samples": args.batch_samples,
        "vehicles": args.vehicles,
        "window": args.window,
        "samples_per_s": round(samples_per_s, 1),
        "copy_rows_per_s": round(copy.rows_per_s, 1),
        "ratio": round(samples_per_s / copy.rows_per_s, 3) if copy.rows_per_s else None,
        "ack_p50_ms": half.figures()["ack_p50_ms"],
        "ack_p99_ms": half.figures()["ack_p99_ms"],
        "half_load_samples_per_s": round(half.stats.samples_per_s, 1),
        "max_streams": streams["max_streams"],
        "rss_bytes_per_stream": streams["rss_bytes_per_stream"],
        "max": top.figures(),
        "half": half.figures(),
        "copy": {
            "rows": copy.rows,
            "batches": copy.batches,
            "seconds": round(copy.seconds, 3),
            "rows_per_s": round(copy.rows_per_s, 1),
        },
        "streams": streams,
        "errors": errors,
    }


def print_summary(s: dict[str, Any], console: Console) -> None:
    t = Table(title="telehub bench ingest (PostgreSQL, one gateway process)", title_justify="left")
    t.add_column("phase")
    t.add_column("samples/s", justify="right")
    t.add_column("ack p50 / p99 ms", justify="right")
    t.add_column("gateway CPU-s", justify="right")
    t.add_column("load (1 min)", justify="right")
    for name in ("max", "half"):
        p = s[name]
        t.add_row(
            f"{name} ({p['vehicles_connected']} streams)",
            f"{p['samples_per_s']:,.0f}",
            f"{_fmt(p['ack_p50_ms'])} / {_fmt(p['ack_p99_ms'])}",
            f"{p['gateway_cpu_seconds']:.1f}",
            f"{p['load_average_1min']:.2f}",
        )
    t.add_row("raw COPY (baseline)", f"{s['copy_rows_per_s']:,.0f}", "-", "-", "-")
    console.print(t)
    ratio = s["ratio"]
    console.print(f"gateway / raw COPY: {ratio:.2f}" if ratio is not None else "no COPY figure")
    st = s["streams"]
    per = st["rss_bytes_per_stream"]
    console.print(
        f"streams held at once: {st['max_streams']:,} of {st['streams_asked']:,} "
        f"(connected in {st['connect_seconds']:.1f} s), "
        + ("memory per stream unknown" if per is None else f"{per / 1024:.1f} KiB per stream")
    )
    if s["errors"]:
        console.print(f"[red]errors: {s['errors']}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
