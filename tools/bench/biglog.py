"""``telehub bench decode --big-log SIZE``: telehub decode's peak memory on a log of SIZE.

``telehub decode`` reads and writes a log chunk by chunk, so its memory should
not grow with the log. This mode measures it: per format it writes a log of
about SIZE (``1.2G`` for 1.2 GB; ``K``, ``M``, ``G``, ``T`` are powers of 1000,
``Ki``, ``Mi``, … of 1024) by replaying the recording with its time shifted,
then runs ``telehub decode LOG --dbc DBC -o DIR`` on it in a child process,
whose own peak resident set (see :mod:`tools.bench.memory`) and frames per
CPU-second are reported. The same is done on a log a tenth the size: where
memory stays flat, the two peaks are close.

The logs are written with numpy (MF4 by :func:`tools.bench.workload.write_mf4`,
candump and BLF by :mod:`tools.bench.fastwrite`, BLF with zlib level 1: level
6, python-can's default, takes minutes a gigabyte), in a temporary directory
under the system's, removed at the end. One log and its decoded tables are on
disk at a time; the run refuses to start without three times SIZE free there.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tools.bench.decoders import BenchError
from tools.bench.fastwrite import write_blf, write_candump
from tools.bench.memory import run_python
from tools.bench.workload import Recording, load_recording, write_mf4

__all__ = ["BLF_COMPRESSION", "WRITERS", "add_argument", "bench_big_log", "parse_size", "run"]

#: zlib level of the BLF log (python-can's writer takes the same levels).
BLF_COMPRESSION = 1
Writer = Callable[[Recording, Path, int, Callable[[int], None]], int]
#: The formats a big log can be written in, with their suffix and writer.
WRITERS: dict[str, tuple[str, Writer]] = {
    "mf4": ("mf4", write_mf4),
    "blf": ("blf", lambda r, p, n, f: write_blf(r, p, n, f, compression_level=BLF_COMPRESSION)),
    "candump": ("log", write_candump),
}
#: Free space needed in the temporary directory, in multiples of SIZE.
SPACE_FACTOR = 3
#: The smaller log, as a fraction of SIZE.
REFERENCE = 0.1
_SAMPLE_FRAMES = 65_536
_POWERS = ("", "k", "m", "g", "t")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)b?", re.IGNORECASE)
_EXIT_OK = 0

FreeSpace = Callable[[Path], int]


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--big-log",
        metavar="SIZE",
        help="instead of the comparison: write a log of SIZE (e.g. 1.2G) per format and "
        "report telehub decode's peak memory and frames per CPU-second on it, and on one a "
        "tenth the size, each in a child process (--log, --dbc, --formats and --frames, "
        "the recording's frames, apply)",
    )


def parse_size(text: str) -> int:
    """Bytes of a size such as ``1.2G``, ``300M``, ``2GiB`` or ``5000``."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match.group(3) and not match.group(2)):
        raise BenchError(f"--big-log takes a size such as 1.2G or 300M, got {text!r}")
    number, unit, binary = match.groups()
    size = int(float(number) * (1024 if binary else 1000) ** _POWERS.index(unit.lower()))
    if size < 1:
        raise BenchError(f"--big-log must be at least one byte, got {text!r}")
    return size


def _free_space(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def run(
    args: argparse.Namespace,
    source: Path,
    dbc: Path,
    formats: tuple[str, ...],
    console: Console,
) -> int:
    """The ``--big-log`` mode of ``telehub bench decode``: print the table or the JSON."""
    summary = bench_big_log(source, dbc, formats, args.frames, parse_size(args.big_log), console)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return _EXIT_OK


def bench_big_log(
    source: Path,
    dbc: Path,
    formats: tuple[str, ...],
    recording_frames: int,
    size: int,
    console: Console,
    *,
    free_space: FreeSpace = _free_space,
) -> dict[str, Any]:
    """Write, decode and measure a log of about *size* bytes per format; the summary."""
    unknown = [fmt for fmt in formats if fmt not in WRITERS]
    if unknown:
        raise BenchError(
            f"--big-log writes {', '.join(WRITERS)} only (no fast writer for {', '.join(unknown)})"
        )
    root = Path(tempfile.gettempdir())
    free = free_space(root)
    if free < SPACE_FACTOR * size:
        raise BenchError(
            f"--big-log {_size(size)} needs {SPACE_FACTOR} times that free in {root} "
            f"({_size(SPACE_FACTOR * size)}), and {_size(free)} are free; set TMPDIR to a "
            "larger disk or ask for less"
        )
    console.print(f"bench: reading {source.name} …")
    recording = load_recording(source, recording_frames)
    summary: dict[str, Any] = {
        "benchmark": "decode-big-log",
        "log": str(source),
        "dbc": str(dbc),
        "size_bytes": size,
        "formats": list(formats),
    }
    with tempfile.TemporaryDirectory(prefix="telehub-bench-big-", dir=root) as tmp:
        for fmt in formats:
            folder = Path(tmp) / fmt
            folder.mkdir()
            frames = _frames_for(recording, fmt, size, folder)
            big = _measure(recording, fmt, frames, dbc, folder, console)
            reference = max(1, round(frames * REFERENCE))
            small = _measure(recording, fmt, reference, dbc, folder, console)
            entry = {**big, "reference": small}
            if big["peak_rss_bytes"] is not None and small["peak_rss_bytes"] is not None:
                entry["peak_rss_growth_bytes"] = big["peak_rss_bytes"] - small["peak_rss_bytes"]
            if fmt == "blf":
                entry["zlib_level"] = BLF_COMPRESSION
            summary[fmt] = entry
            shutil.rmtree(folder)
    return summary


def _frames_for(recording: Recording, fmt: str, size: int, folder: Path) -> int:
    """Frames that make a log of about *size* bytes, from a sample of the format."""
    suffix, write = WRITERS[fmt]
    sample = folder / f"sample.{suffix}"
    count = write(recording, sample, min(len(recording), _SAMPLE_FRAMES), lambda _: None)
    per_frame = sample.stat().st_size / count
    sample.unlink()
    return max(1, math.ceil(size / per_frame))


def _measure(
    recording: Recording, fmt: str, frames: int, dbc: Path, folder: Path, console: Console
) -> dict[str, Any]:
    """Write *frames* frames as *fmt*, decode them in a child process, delete both."""
    suffix, write = WRITERS[fmt]
    log = folder / f"replayed.{suffix}"
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} of {task.total:,.0f} frames"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    started = time.perf_counter()
    with progress:
        task = progress.add_task(f"write {fmt}", total=frames)
        write(recording, log, frames, lambda done: progress.update(task, completed=done))
    write_seconds = time.perf_counter() - started
    file_bytes = log.stat().st_size
    console.print(
        f"bench: wrote {frames:,} frames, {_size(file_bytes)}, to a temporary {fmt} file "
        f"in {write_seconds:.1f} s; decoding it in a child process …"
    )
    out, report, errors = folder / "decoded", folder / "decode.json", folder / "decode.err"
    argv = [str(log), "--dbc", str(dbc), "-o", str(out), "--quiet", "--json"]
    spinner = Progress(
        SpinnerColumn(),
        TextColumn(f"telehub decode {log.name} ({_size(file_bytes)})"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    try:
        with spinner, report.open("wb") as stdout, errors.open("wb") as stderr:
            spinner.add_task("decode", total=None)
            child = run_python(
                "tools.decode_cmd:main", argv, report=folder / "peak", stdout=stdout, stderr=stderr
            )
        if child.returncode != 0:
            last = errors.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise BenchError(f"telehub decode exited with {child.returncode}: {last[0]}")
        output_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        try:
            decoded = json.loads(report.read_text())
        except json.JSONDecodeError as exc:
            raise BenchError(f"telehub decode printed no JSON summary: {exc}") from exc
    finally:
        log.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)
    result = {
        "file_bytes": file_bytes,
        "frames": decoded["frames"],
        "frames_decoded": decoded["frames_decoded"],
        "peak_rss_bytes": child.peak_rss_bytes,
        "frames_per_cpu_s": decoded["frames_per_cpu_s"],
        "cpu_seconds": round(child.cpu_seconds, 3),
        "wall_seconds": round(child.wall_seconds, 3),
        "write_seconds": round(write_seconds, 3),
        "output_bytes": output_bytes,
        "reader": f"{decoded['reader']} reader, {decoded['engine']} engine",
    }
    peak = "?" if child.peak_rss_bytes is None else f"{child.peak_rss_bytes / 2**20:,.0f} MiB"
    console.print(
        f"bench: {fmt}: {result['frames']:,} frames decoded at "
        f"{result['frames_per_cpu_s']:,.0f} frames/CPU-s, peak memory {peak}"
    )
    return result


def _size(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f} B"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f}"


def print_summary(s: dict[str, Any], console: Console) -> None:
    console.print()
    console.rule(f"[bold]telehub bench decode --big-log {_size(s['size_bytes'])}")
    console.print(
        f"{s['log']} replayed with its time shifted, decoded with {Path(s['dbc']).name} by "
        "telehub decode (wide Parquet, a file a message) in a child process"
    )
    t = Table(
        caption=f"the reference log is a tenth the size; BLF is zlib level {BLF_COMPRESSION}",
        caption_justify="left",
    )
    for column in ("format", "file", "frames", "peak MiB", "reference MiB", "frames/CPU-s"):
        t.add_column(column, justify="left" if column == "format" else "right")
    for fmt in s["formats"]:
        e = s[fmt]
        t.add_row(
            fmt,
            _size(e["file_bytes"]),
            f"{e['frames']:,}",
            _mib(e["peak_rss_bytes"]),
            _mib(e["reference"]["peak_rss_bytes"]),
            f"{e['frames_per_cpu_s']:,.0f}",
        )
    console.print(t)
