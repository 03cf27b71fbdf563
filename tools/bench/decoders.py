"""The ways ``telehub bench decode`` decodes a log, each timed the same way.

Every runner takes a log and returns a :class:`PathRun`: frames read, frames
decoded (for the cross-check between paths), CPU and wall seconds, and the peak
resident memory. In-process paths are timed with ``time.process_time()`` (all
threads) and ``time.perf_counter()`` after ``gc.collect()``, their peak memory
is the process's during the run (:class:`tools.bench.memory.PeakWatch`); the
cantools CLI runs in a child process, timed and measured by its own rusage.
See :mod:`tools.bench.decode` for what is compared.
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import can
import cantools
from cantools.database.errors import DecodeError, UnsupportedDatabaseFormatError

from tools.bench.memory import PeakWatch, run_python

__all__ = [
    "BenchError",
    "PathRun",
    "load_dbc",
    "run_asammdf",
    "run_cantools_cli",
    "run_naive",
    "run_telehub",
]


class BenchError(Exception):
    """The benchmark cannot run as asked (message says why)."""


@dataclass(frozen=True, slots=True)
class PathRun:
    """One timed run of one path: frames read, frames decoded, CPU and wall seconds."""

    frames: int
    decoded: int | None
    cpu_seconds: float
    wall_seconds: float
    errors: int | None = None
    #: Frames decoded among the log's first ``--cli-frames`` (naive path, candump).
    decoded_head: int | None = None
    #: How telehub read and decoded the log, from its summary.
    reader: str | None = None
    #: Peak resident set during the run (this process's, or the child's), in bytes.
    peak_rss_bytes: int | None = None
    #: This process's resident set when the run started (in-process paths).
    start_rss_bytes: int | None = None

    @property
    def per_cpu_s(self) -> float:
        return self.frames / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def per_wall_s(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_decoded": self.decoded,
            "errors": self.errors,
            "cpu_seconds": round(self.cpu_seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "frames_per_cpu_s": round(self.per_cpu_s, 1),
            "frames_per_wall_s": round(self.per_wall_s, 1),
            "peak_rss_bytes": self.peak_rss_bytes,
            "start_rss_bytes": self.start_rss_bytes,
            **({"reader": self.reader} if self.reader else {}),
        }


def load_dbc(path: Path) -> cantools.database.Database:
    """The DBC as the naive loop uses it (not strict, as agent scripts load it)."""
    try:
        db = cantools.database.load_file(path, database_format="dbc", strict=False)
    except (OSError, UnicodeDecodeError, UnsupportedDatabaseFormatError) as exc:
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 160 else reason[:160] + " …"
        raise BenchError(f"cannot read the DBC file {path}: {reason}") from exc
    if not isinstance(db, cantools.database.Database) or not db.messages:
        raise BenchError(f"the DBC file {path} defines no messages")
    return db


Counts = tuple[int, int | None, int | None]  # frames read, decoded, not decoded


def _timed(work: Callable[[], Counts]) -> PathRun:
    gc.collect()
    memory = PeakWatch()
    cpu, wall = time.process_time(), time.perf_counter()
    frames, decoded, errors = work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return PathRun(
        frames,
        decoded,
        cpu,
        wall,
        errors,
        peak_rss_bytes=memory.peak(),
        start_rss_bytes=memory.start_bytes,
    )


def run_telehub(log: Path, dbc: Path, tmp: Path) -> PathRun:
    """``telehub decode LOG --dbc DBC -o DIR`` in this process (wide Parquet, a file a message).

    Its ``--json`` summary, printed into a buffer within the timing, gives the
    frames it read and decoded and the reader it used. The output is deleted
    after each run, outside the timing.
    """
    from tools import decode_cmd

    out = tmp / "telehub-out"
    argv = [str(log), "--dbc", str(dbc), "-o", str(out), "--quiet", "--json"]
    printed = io.StringIO()
    codes: list[int] = []

    def work() -> Counts:
        with contextlib.redirect_stdout(printed):
            codes.append(decode_cmd.main(argv))
        return 0, None, None

    try:
        result = _timed(work)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if codes != [0]:
        raise BenchError(f"telehub decode {log.name} exited with {codes[0]} (see above)")
    try:
        summary = json.loads(printed.getvalue())
        frames = int(summary["frames"])
        decoded = int(summary["frames_decoded"])
        errors = int(summary["unknown_ids"]) + int(summary["decode_errors"])
        reader = f"{summary['reader']} reader, {summary['engine']} engine"
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"telehub decode printed no usable JSON summary: {exc!r}") from exc
    return replace(result, frames=frames, decoded=decoded, errors=errors, reader=reader)


def run_naive(log: Path, db: cantools.database.Database, head: int = 0) -> PathRun:
    """python-can's reader and ``Database.decode_message`` per frame, as most scripts do.

    Also counts the frames decoded among the first *head* frames (the cantools
    CLI's share) at no cost per frame: the loop simply runs in two parts.
    """
    decoded_head: list[int] = []

    def work() -> Counts:
        with can.LogReader(str(log)) as reader:
            frames = iter(reader)
            n1, decoded1, errors1 = _decode_naive(db, itertools.islice(frames, head))
            n2, decoded2, errors2 = _decode_naive(db, frames)
        decoded_head.append(decoded1)
        return n1 + n2, decoded1 + decoded2, errors1 + errors2

    result = _timed(work)
    return replace(result, decoded_head=decoded_head[0] if head else None)


def _decode_naive(
    db: cantools.database.Database, messages: Iterable[can.Message]
) -> tuple[int, int, int]:
    frames = decoded = errors = 0
    for msg in messages:
        frames += 1
        try:
            # python-can's data is a bytearray, which cantools reads as it is; a
            # bytes() copy would make the baseline slower than scripts run it.
            db.decode_message(
                msg.arbitration_id,
                msg.data,  # type: ignore[arg-type]
                force_extended_id=msg.is_extended_id,
            )
        except (KeyError, DecodeError):
            errors += 1
            continue
        decoded += 1
    return frames, decoded, errors


def run_asammdf(log: Path, dbc: Path) -> PathRun:
    """asammdf's ``extract_bus_logging``: decoded frames are the extracted groups' samples."""
    from asammdf import MDF

    def work() -> Counts:
        mdf = MDF(log)
        try:
            extracted = mdf.extract_bus_logging({"CAN": [(str(dbc), 0)]})
            try:
                decoded = sum(int(g.channel_group.cycles_nr) for g in extracted.groups)
            finally:
                extracted.close()
            frames = sum(
                int(g.channel_group.cycles_nr)
                for g in mdf.groups
                if any(c.name == "CAN_DataFrame" for c in g.channels)
            )
        finally:
            mdf.close()
        return frames, decoded, frames - decoded

    return _timed(work)


def run_cantools_cli(log: Path, dbc: Path, tmp: Path, frames: int) -> PathRun:
    """``python -m cantools decode DBC < log`` in a child process; its CPU and memory from rusage.

    The output goes to a temporary file: a frame it decoded is a line ending in
    ``" ::"`` (the signals follow on the next lines), one it did not ends in the
    reason.
    """
    out, errors = tmp / "cantools-cli.out", tmp / "cantools-cli.err"
    gc.collect()
    with log.open("rb") as stdin, out.open("wb") as stdout, errors.open("wb") as stderr:
        done = run_python(
            "cantools",
            ["decode", str(dbc)],
            report=tmp / "cantools-cli.peak",
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        if done.returncode != 0:
            last = errors.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise BenchError(f"cantools decode exited with {done.returncode}: {last[0]}")
        decoded = lines = 0
        with out.open("rb") as text:
            for line in text:
                if b" ::" in line:
                    lines += 1
                    if line.rstrip(b"\r\n").endswith(b" ::"):
                        decoded += 1
    finally:
        out.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)
    if lines != frames:
        raise BenchError(f"cantools decode parsed {lines:,} of {frames:,} candump lines")
    return PathRun(
        frames,
        decoded,
        done.cpu_seconds,
        done.wall_seconds,
        frames - decoded,
        peak_rss_bytes=done.peak_rss_bytes,
    )
