"""``telehub bench decode``: frames decoded per CPU-second, telehub against the usual ways.

One run writes the same frames into a temporary log of each format asked for
(``--formats``, default MF4, BLF and candump) and times, per format, every way
of decoding that log with the same DBC:

- ``telehub``: ``telehub decode LOG --dbc DBC -o DIR`` in this process (its
  fast readers, vectorised decoding and writing the wide Parquet tables, one a
  message, included; the output is deleted after each run);
- ``naive``: python-can's ``can.LogReader`` and cantools'
  ``Database.decode_message`` per frame (with the frame's extended flag), as
  most scripts do;
- ``cantools_cli``: ``python -m cantools decode DBC < candump.log`` in a child
  process (candump only: the one format it reads); its CPU is the child's user
  and system time from ``getrusage(RUSAGE_CHILDREN)``, interpreter start-up and
  DBC parsing included. It decodes ~20k frames/s, so it runs on the log's first
  ``--cli-frames`` frames only;
- ``asammdf``: ``MDF(log).extract_bus_logging({"CAN": [(DBC, 0)]})`` (MF4 only).

In-process paths are timed with ``time.process_time()`` (all threads) and wall
time, after ``gc.collect()``; the order of the paths rotates from repeat to
repeat, and each path first runs once untimed on a small log (imports, caches;
and what a fast reader loads for large logs only, the candump scanner's numba).
Figures are frames read per CPU-second, medians of ``--repeats``; ratios are
medians of the per-repeat ratios. Every path also reports how many frames it
decoded (the run fails when they disagree for the same frames) and its peak
resident memory (``peak_rss_bytes``, the largest of the repeats; see
:mod:`tools.bench.memory`): for in-process paths the process's own from just
before the path, the libraries and the recording included.

The default data is the bundled 545 s drive (65,296 frames) replayed with its
time shifted until ``--frames`` (default 1,000,000) frames; ``--log``/``--dbc``
take a recording of your own instead. Remote and error frames are left out of
the written logs. MF4 is written in CANedge's layout by
:func:`tools.bench.workload.write_mf4`, the other formats by python-can's
writers. These machines are shared and noisy: read the medians and the ratios.

``--big-log SIZE`` measures something else: ``telehub decode``'s peak memory
and speed, in a child process, on a log of SIZE (1.2G, say) per format and on
one a tenth the size (see :mod:`tools.bench.biglog`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools
from rich.console import Console
from rich.table import Table

from tools.bench import biglog
from tools.bench.decoders import (
    BenchError,
    PathRun,
    load_dbc,
    run_asammdf,
    run_cantools_cli,
    run_naive,
    run_telehub,
)
from tools.bench.workload import Recording, WorkloadError, load_recording, write_log
from tools.demo import demo_data
from vehicle_agent import logs

__all__ = [
    "DEFAULT_CLI_FRAMES",
    "DEFAULT_FORMATS",
    "DEFAULT_FRAMES",
    "FORMAT_SUFFIXES",
    "PATHS",
    "BenchError",
    "PathRun",
    "bench",
    "register",
    "run",
]

#: Formats by the name the CLI and the JSON use, with the suffix of their files.
FORMAT_SUFFIXES = {"mf4": "mf4", "blf": "blf", "candump": "log", "asc": "asc"}
DEFAULT_FORMATS = ("mf4", "blf", "candump")
DEFAULT_FRAMES = 1_000_000
DEFAULT_CLI_FRAMES = 200_000
#: The ways of decoding, in the order of the table.
PATHS = ("telehub", "naive", "cantools_cli", "asammdf")
#: Frames of the untimed warm-up run of each in-process path.
WARM_UP_FRAMES = 1_000

_EXIT_OK = 0
_EXIT_ERROR = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "decode",
        help="decoded frames per CPU-second: telehub decode against the naive loop, "
        "the cantools CLI and asammdf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--log", type=Path, help="a CAN log python-can reads (default: the bundled drive)"
    )
    p.add_argument("--dbc", type=Path, help="the DBC file for --log (required with --log)")
    p.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated formats to write and decode, of {', '.join(FORMAT_SUFFIXES)} "
        f"(default: {','.join(DEFAULT_FORMATS)})",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        help=f"frames per log: the recording's first N, replayed with its time shifted "
        f"if it is shorter (default: {DEFAULT_FRAMES:,})",
    )
    p.add_argument(
        "--cli-frames",
        type=int,
        default=DEFAULT_CLI_FRAMES,
        help="the cantools CLI decodes only the candump log's first N frames; 0 skips it "
        f"(default: {DEFAULT_CLI_FRAMES:,})",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs of each path (default: 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    biglog.add_argument(p)
    p.set_defaults(handler=run)


@dataclass(frozen=True, slots=True)
class Workload:
    """The log of one format and what runs on it."""

    fmt: str
    log: Path
    frames: int
    warm_up: Path
    paths: tuple[str, ...]
    cli_log: Path | None = None
    cli_frames: int = 0


@dataclass(frozen=True, slots=True)
class Setup:
    """What every repeat runs: the DBC and the log of each format."""

    source: Path
    dbc: Path
    db: cantools.database.Database
    tmp: Path
    workloads: tuple[Workload, ...]
    #: CPU seconds the cantools CLI takes on an empty log (interpreter, imports, DBC).
    cli_startup: float | None


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.repeats < 1:
            raise BenchError(f"--repeats must be at least 1, got {args.repeats}")
        if args.frames < 1:
            raise BenchError(f"--frames must be at least 1, got {args.frames}")
        if args.cli_frames < 0:
            raise BenchError(f"--cli-frames must be 0 or more, got {args.cli_frames}")
        formats = parse_formats(args.formats)
        source, dbc = _inputs(args.log, args.dbc)
        if args.big_log is not None:
            return biglog.run(args, source, dbc, formats, console)
        with tempfile.TemporaryDirectory(prefix="telehub-bench-") as tmp:
            summary = bench(
                source, dbc, Path(tmp), formats, args.frames, args.cli_frames, args.repeats, console
            )
    except (BenchError, WorkloadError) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    if not summary["decoded_agree"]:
        print(
            "telehub: error: the paths decoded different numbers of frames from the same "
            "frames (see frames_decoded)",
            file=sys.stderr,
        )
        return _EXIT_ERROR
    return _EXIT_OK


def parse_formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in FORMAT_SUFFIXES]
    if unknown or not names:
        raise BenchError(
            f"unknown format {', '.join(map(repr, unknown)) or repr(text)}; "
            f"choose from {', '.join(FORMAT_SUFFIXES)}"
        )
    return names


def _inputs(log: Path | None, dbc: Path | None) -> tuple[Path, Path]:
    if log is None:
        if dbc is not None:
            raise BenchError("--dbc goes with --log (the bundled recording has its own DBC)")
        drive = demo_data() / "drive-gnss"
        return drive / "drive_545s.MF4", drive / "canmod-gps.dbc"
    if dbc is None:
        raise BenchError("--log needs a --dbc")
    for path in (log, dbc):
        if not path.is_file():
            raise BenchError(f"no such file: {path}")
    return log, dbc


def bench(
    source: Path,
    dbc: Path,
    tmp: Path,
    formats: tuple[str, ...],
    frames: int,
    cli_frames: int,
    repeats: int,
    console: Console,
) -> dict[str, Any]:
    """Write the logs, run *repeats* rounds of every path and return the summary."""
    db = load_dbc(dbc)
    console.print(f"bench: reading {source.name} …")
    recording = load_recording(source, frames)
    if recording.skipped:
        console.print(f"bench: left out {recording.skipped:,} remote and error frames")
    workloads = tuple(
        _write_workload(recording, fmt, tmp, frames, cli_frames, console) for fmt in formats
    )
    cli_startup = None
    if any(w.cli_log is not None for w in workloads):
        empty = tmp / "empty.log"
        empty.touch()
        cli_startup = run_cantools_cli(empty, dbc, tmp, 0).cpu_seconds
    setup = Setup(source, dbc, db, tmp, workloads, cli_startup)
    for w in workloads:
        logs.warm_up(w.log)  # what only a large log loads (the candump scanner: numba)
        for path in w.paths:
            if path != "cantools_cli":
                _run_path(setup, w, path, w.warm_up)
    runs: dict[str, list[dict[str, PathRun]]] = {w.fmt: [] for w in workloads}
    for i in range(repeats):
        for w in workloads:
            # Rotate the order of the paths so that drift on a shared machine
            # does not always favour the same one.
            shift = i % len(w.paths)
            order = w.paths[shift:] + w.paths[:shift]
            results = {path: _run_path(setup, w, path, w.log) for path in order}
            runs[w.fmt].append(results)
            console.print(
                f"bench: repeat {i + 1}/{repeats} {w.fmt}: "
                + ", ".join(
                    f"{path} {results[path].per_cpu_s:,.0f} frames/CPU-s "
                    f"({results[path].cpu_seconds:.2f} CPU-s)"
                    for path in w.paths
                )
            )
    return summarize(setup, runs)


def _write_workload(
    recording: Recording,
    fmt: str,
    tmp: Path,
    frames: int,
    cli_frames: int,
    console: Console,
) -> Workload:
    suffix = FORMAT_SUFFIXES[fmt]
    started = time.perf_counter()
    log = tmp / f"bench.{suffix}"
    written = write_log(recording, suffix, log, frames)
    warm_up = tmp / f"warm-up.{suffix}"
    write_log(recording, suffix, warm_up, min(WARM_UP_FRAMES, frames))
    console.print(
        f"bench: wrote {written:,} frames to a temporary {fmt} file "
        f"in {time.perf_counter() - started:.1f} s"
    )
    paths: tuple[str, ...] = ("telehub", "naive")
    cli_log = None
    cli_count = 0
    if fmt == "candump" and cli_frames > 0:
        paths += ("cantools_cli",)
        cli_count = min(cli_frames, written)
        cli_log = log
        if cli_count < written:
            cli_log = tmp / "cantools-cli.log"
            with log.open() as full, cli_log.open("w") as head:
                head.writelines(itertools.islice(full, cli_count))
            console.print(
                f"bench: the cantools CLI decodes the first {cli_count:,} frames only "
                "(--cli-frames)"
            )
    if fmt == "mf4":
        paths += ("asammdf",)
    return Workload(fmt, log, written, warm_up, paths, cli_log, cli_count)


def _run_path(setup: Setup, w: Workload, path: str, log: Path) -> PathRun:
    if path == "telehub":
        return run_telehub(log, setup.dbc, setup.tmp)
    if path == "naive":
        return run_naive(log, setup.db, w.cli_frames)
    if path == "asammdf":
        return run_asammdf(log, setup.dbc)
    if path == "cantools_cli" and w.cli_log is not None:
        return run_cantools_cli(w.cli_log, setup.dbc, setup.tmp, w.cli_frames)
    raise BenchError(f"no path {path!r} for {w.fmt}")


def _after(run: PathRun, startup: float | None) -> float:
    cpu = run.cpu_seconds - (startup or 0.0)
    return run.frames / cpu if cpu > 0 else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _median_ratio(runs: list[dict[str, PathRun]], a: str, b: str) -> float | None:
    ratios = [r[a].per_cpu_s / r[b].per_cpu_s for r in runs if r[b].per_cpu_s > 0]
    return round(statistics.median(ratios), 3) if ratios else None


def summarize(setup: Setup, runs: dict[str, list[dict[str, PathRun]]]) -> dict[str, Any]:
    """One entry per format (frames per CPU-second per path), the ratios and the cross-check."""
    summary: dict[str, Any] = {
        "benchmark": "decode",
        "log": str(setup.source),
        "dbc": str(setup.dbc),
        "formats": [w.fmt for w in setup.workloads],
        "repeats": len(next(iter(runs.values()))),
        "decoded_agree": True,
    }
    for w in setup.workloads:
        fmt_runs = runs[w.fmt]
        entry: dict[str, Any] = {"frames": w.frames}
        for path in w.paths:
            entry[path] = round(statistics.median(r[path].per_cpu_s for r in fmt_runs), 1)
        if "cantools_cli" in w.paths:
            entry["cantools_cli_frames"] = w.cli_frames
            entry["cantools_cli_startup_cpu_s"] = _round(setup.cli_startup)
            # The same runs with the start-up taken out: the CLI's decoding alone.
            entry["cantools_cli_after_startup"] = round(
                statistics.median(_after(r["cantools_cli"], setup.cli_startup) for r in fmt_runs),
                1,
            )
        for path in w.paths[1:]:
            entry[f"telehub_vs_{path}"] = _median_ratio(fmt_runs, "telehub", path)
        entry["frames_per_wall_s"] = {
            path: round(statistics.median(r[path].per_wall_s for r in fmt_runs), 1)
            for path in w.paths
        }
        entry["peak_rss_bytes"] = {path: _peak(r[path] for r in fmt_runs) for path in w.paths}
        entry["frames_decoded"], entry["decoded_agree"] = _cross_check(w, fmt_runs)
        summary["decoded_agree"] = summary["decoded_agree"] and entry["decoded_agree"]
        entry["runs"] = [
            {"repeat": i + 1, **{path: r[path].figures() for path in w.paths}}
            for i, r in enumerate(fmt_runs)
        ]
        summary[w.fmt] = entry
    return summary


def _peak(runs: Iterable[PathRun]) -> int | None:
    peaks = [run.peak_rss_bytes for run in runs]
    return None if None in peaks else max(p for p in peaks if p is not None)


def _cross_check(w: Workload, runs: list[dict[str, PathRun]]) -> tuple[dict[str, Any], bool]:
    """Frames each path decoded; they must agree across paths and repeats.

    The cantools CLI decodes only the first ``cli_frames`` frames: it is held to
    the naive loop's count over those (``cantools_cli_reference``).
    """
    decoded: dict[str, Any] = {}
    agree = True
    for path in w.paths:
        counts = {r[path].decoded for r in runs}
        agree = agree and len(counts) == 1 and None not in counts
        decoded[path] = counts.pop() if len(counts) == 1 else sorted(counts, key=str)
    full = [decoded[path] for path in w.paths if path != "cantools_cli"]
    agree = agree and all(count == full[0] for count in full)
    if "cantools_cli" in w.paths:
        reference = {r["naive"].decoded_head for r in runs}
        decoded["cantools_cli_reference"] = reference.pop() if len(reference) == 1 else None
        agree = agree and decoded["cantools_cli"] == decoded["cantools_cli_reference"]
    return decoded, agree


_LABELS = {
    "telehub": "telehub",
    "naive": "naive loop",
    "cantools_cli": "cantools CLI",
    "asammdf": "asammdf",
}


def print_summary(s: dict[str, Any], console: Console) -> None:
    console.print()
    console.rule("[bold]telehub bench decode")
    console.print(
        f"{s['log']} with {Path(s['dbc']).name}, written to each format; "
        f"medians of {s['repeats']} repeat{'s' if s['repeats'] > 1 else ''}"
    )
    t = Table(
        title="frames per CPU-second",
        title_justify="left",
        caption="in brackets: telehub's frames per CPU-second over that path's",
        caption_justify="left",
    )
    t.add_column("path")
    formats = s["formats"]
    for fmt in formats:
        t.add_column(fmt, justify="right")
    t.add_row("frames", *(f"{s[fmt]['frames']:,}" for fmt in formats), end_section=True)
    for path in PATHS:
        cells = []
        for fmt in formats:
            e = s[fmt]
            ratio = e.get(f"telehub_vs_{path}")
            value = "-" if path not in e else f"{e[path]:,.0f}"
            cells.append(value if ratio is None else f"{value} ({ratio:.2f}x)")
        style = "bold" if path == "telehub" else None
        t.add_row(_LABELS[path], *cells, style=style)
    console.print(t)
    _print_memory(s, console)
    for fmt in formats:
        e = s[fmt]
        if "cantools_cli_frames" in e:
            share = (
                f"the first {e['cantools_cli_frames']:,} frames"
                if e["cantools_cli_frames"] < e["frames"]
                else "all frames"
            )
            console.print(
                f"{fmt}: the cantools CLI decoded {share} in a child process whose start-up "
                f"and DBC parsing alone take {e['cantools_cli_startup_cpu_s']} CPU-s "
                f"({e['cantools_cli_after_startup']:,.0f} frames/CPU-s without them)"
            )
        decoded = e["frames_decoded"]
        counts = ", ".join(f"{_LABELS[p]} {_count(decoded[p])}" for p in PATHS if p in decoded)
        if "cantools_cli" in decoded:
            counts += (
                f" (the naive loop decoded {_count(decoded['cantools_cli_reference'])} "
                f"of the CLI's {e['cantools_cli_frames']:,})"
            )
        verdict = "[green]agree[/]" if e["decoded_agree"] else "[red]DISAGREE[/]"
        console.print(f"{fmt}: frames decoded: {counts} ({verdict})")


def _print_memory(s: dict[str, Any], console: Console) -> None:
    t = Table(title="peak RSS, MiB", title_justify="left")
    t.add_column("path")
    for fmt in s["formats"]:
        t.add_column(fmt, justify="right")
    for path in PATHS:
        peaks = [s[fmt]["peak_rss_bytes"].get(path, "-") for fmt in s["formats"]]
        cells = [p if p in ("-", None) else f"{p / 2**20:,.0f}" for p in peaks]
        t.add_row(_LABELS[path], *("n/a" if c is None else c for c in cells))
    console.print(t)
    starts = [
        run[path]["start_rss_bytes"]
        for fmt in s["formats"]
        for run in s[fmt]["runs"]
        for path in s[fmt]["peak_rss_bytes"]
        if path != "cantools_cli" and run[path]["start_rss_bytes"] is not None
    ]
    own = f" ({min(starts) / 2**20:,.0f} MiB before they start)" if starts else ""
    console.print(
        f"peak RSS: in-process paths include this process's own memory{own}: the "
        "libraries and the recording; the cantools CLI is a process of its own"
    )


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
