"""``telehub decode``: a CAN log and DBC files to tables of signal values, as cantools decodes.

The log is read in chunks of columns (the fast reader for its format where there
is one, python-can's otherwise) and each chunk is decoded message by message with
numpy (:mod:`vehicle_agent.vector.decoder`): every value equals, in value and type, what
cantools' ``Message.decode`` gives for that frame. Messages whose layout cannot
be vectorised exactly are decoded by cantools frame by frame; ``--engine
cantools`` does that for every message (the reference). Memory stays flat: each
chunk is written out before the next is read.

Output (``-o OUT``): a ``.parquet``, ``.csv`` or ``.jsonl`` file, or a directory
(an existing one, or a path without suffix). The wide layout is one table per
message (``timestamp``, ``channel``, one column per signal): a directory gets one
file per message, a single Parquet/CSV file one message, a JSON Lines file every
frame with its ``message``. The long layout is one table of ``timestamp, channel,
message, signal, value`` rows. Without ``--layout``: wide for a directory, a
JSON Lines file or a single selected message, long otherwise.

Frames are matched to messages by identifier and the frame's extended flag, and
J1939 databases by parameter group number; with several ``--dbc`` the first that
knows a frame decodes it, and ``--dbc CHANNEL=DBC`` applies a DBC to the frames
of one log channel only. DBC files load non-strict (cantools' strict checks
reject many real files). A frame shorter than its message is a decode error (as
in cantools), a longer one is cut; remote and error frames are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tools.cli import subcommand_main
from tools.decode import DbcSource, VectorDecoder, message_names
from tools.decode.sinks import (
    FORMATS,
    Format,
    Layout,
    SinkError,
    inexact_in_long,
    open_sink,
    suffix_format,
)
from vehicle_agent.catalog import is_j1939_database, read_dbc
from vehicle_agent.errors import DbcError, SourceError
from vehicle_agent.logs import DEFAULT_CHUNK, FrameColumns, ReaderChoice, Unsupported, read_columns
from vehicle_agent.logs.columns import select

__all__ = ["UsageError", "main", "register", "run"]

_EXIT_OK = 0
_EXIT_ERROR = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line asks for something impossible (exit code 2)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "decode",
        help="decode a CAN log with DBC files into Parquet, CSV or JSON Lines tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", type=Path, metavar="LOG", help="a CAN log (BLF, MF4, ASC, candump, …)")
    p.add_argument(
        "--dbc",
        action="append",
        required=True,
        metavar="[CHANNEL=]DBC",
        help="a DBC file (repeat: the first that knows a frame wins); CHANNEL= limits it "
        "to the frames of that log channel",
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="output file or directory"
    )
    p.add_argument("--format", choices=FORMATS, help="default: from OUT's suffix; parquet")
    p.add_argument(
        "--layout",
        choices=("wide", "long"),
        help="wide: a table per message; long: one row per value (default: see above)",
    )
    p.add_argument(
        "--message", action="append", default=[], metavar="NAME", help="only these messages"
    )
    p.add_argument(
        "--signal",
        action="append",
        default=[],
        metavar="NAME",
        help="only these signals (NAME or MESSAGE.NAME)",
    )
    p.add_argument("--start", type=float, metavar="S", help="seconds after the log's first frame")
    p.add_argument(
        "--end", type=float, metavar="S", help="seconds after the first frame (exclusive)"
    )
    p.add_argument(
        "--choices",
        choices=("raw", "text"),
        default="raw",
        help="text: add a '<signal>.label' column with the choice's text (default: raw)",
    )
    p.add_argument("--no-scaling", action="store_true", help="raw values, without scale and offset")
    p.add_argument(
        "--reader",
        choices=("auto", "fast", "python-can"),
        default="auto",
        help="log reader (default auto: the fast one where there is one)",
    )
    p.add_argument(
        "--engine",
        choices=("vector", "cantools"),
        default="vector",
        help="vector (default) or cantools frame by frame (the reference)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"frames per chunk (default {DEFAULT_CHUNK:,})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress, summary or warnings")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``telehub decode`` on its own: *argv* without the command name; returns the exit code."""
    return subcommand_main("decode", register, argv)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        summary = decode(args, console)
    except UsageError as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except (DbcError, SourceError, SinkError, Unsupported) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    except OSError as exc:  # a reader's own I/O failure (permissions, a vanished file)
        print(f"telehub: error: cannot read {str(args.log)!r}: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    if args.json:
        print(json.dumps(summary, indent=2))
    if not args.quiet:
        _print_summary(summary, console)
    return _EXIT_OK


# --- inputs --------------------------------------------------------------------


def _sources(specs: Sequence[str]) -> list[DbcSource]:
    """Load every ``[CHANNEL=]PATH`` once; raises DbcError naming the file."""
    sources: list[DbcSource] = []
    loaded: dict[Path, DbcSource] = {}
    for spec in specs:
        channel: str | None = None
        path = Path(spec)
        if "=" in spec and not path.exists():
            channel, _, rest = spec.partition("=")
            path = Path(rest)
            if not channel:
                raise UsageError(f"--dbc {spec!r}: the channel before '=' is empty")
        key = path.resolve()
        if key not in loaded:
            database = read_dbc(path).database
            loaded[key] = DbcSource(database, path.stem, is_j1939_database(database))
        sources.append(dataclasses.replace(loaded[key], channel=channel))
    return sources


def _close(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=5, cutoff=0.5)
    if not close:
        close = [c for c in candidates if word.lower() in c.lower()][:5]
    return f"; did you mean {', '.join(close)}?" if close else ""


def _selection(
    sources: Sequence[DbcSource], messages: Sequence[str], signals: Sequence[str]
) -> dict[str, set[str] | None] | None:
    """Display name -> signals to output (None: all), or None for everything."""
    names = message_names(sources)
    for name in messages:
        if name not in names:
            raise UsageError(f"no message {name!r} in the DBC files{_close(name, list(names))}")
    chosen = list(dict.fromkeys(messages)) or list(names)
    if not signals:
        return dict.fromkeys(chosen) if messages else None
    wanted: dict[str, set[str]] = {}
    every = [f"{m}.{s.name}" for m, msg in names.items() for s in msg.signals]
    every += sorted({s.name for msg in names.values() for s in msg.signals})
    for signal in signals:
        found = False
        for name in chosen:
            message = names[name]
            for candidate in message.signals:
                if signal in (candidate.name, f"{name}.{candidate.name}"):
                    wanted.setdefault(name, set()).add(candidate.name)
                    found = True
        if not found:
            where = "the selected messages" if messages else "the DBC files"
            raise UsageError(f"no signal {signal!r} in {where}{_close(signal, every)}")
    for name in chosen:
        if messages and name not in wanted:
            raise UsageError(f"message {name!r} has none of the --signal names")
    return {name: wanted[name] for name in chosen if name in wanted}


def _output(
    out: Path, fmt: str | None, layout: str | None, messages: int
) -> tuple[Format, Layout, bool]:
    """(format, layout, whether OUT is a directory) from the options and OUT's name."""
    from_suffix = suffix_format(out)
    if out.is_dir():
        directory = True
    elif from_suffix is not None:
        directory = False
    elif not out.suffix:
        directory = True
    elif fmt is not None:
        directory = False
    else:
        raise UsageError(
            f"cannot tell the output format of {str(out)!r}: name a .parquet, .csv or "
            ".jsonl file or a directory, or give --format"
        )
    chosen: Format = fmt or from_suffix or "parquet"  # type: ignore[assignment]
    if layout is None:
        wide = directory or chosen == "jsonl" or messages == 1
        layout = "wide" if wide else "long"
    if layout == "wide" and not directory and chosen != "jsonl" and messages != 1:
        raise UsageError(
            f"a wide {chosen} file holds one message, and {messages} are selected: write "
            "to a directory (one file per message), select one with --message, or use "
            "--layout long or --format jsonl"
        )
    return chosen, layout, directory  # type: ignore[return-value]


def _frames(path: Path, reader: ReaderChoice, chunk: int) -> tuple[str, Iterator[FrameColumns]]:
    """The chunks of the log and which reader gives them ("fast" or "python-can").

    The fast reader is asked first (it refuses a file before its first chunk), so
    the summary can say which reader was used.
    """
    if reader != "python-can":
        chunks = read_columns(path, chunk_frames=chunk, reader="fast")
        try:
            first = next(chunks)
        except StopIteration:
            return "fast", iter(())
        except Unsupported:
            if reader == "fast":
                raise
        else:
            return "fast", itertools.chain([first], chunks)
    return "python-can", read_columns(path, chunk_frames=chunk, reader="python-can")


def _window(
    chunk: FrameColumns, first: float, start: float | None, end: float | None
) -> FrameColumns:
    since = chunk.timestamp - first
    keep = np.ones(len(chunk), dtype=np.bool_)
    if start is not None:
        keep &= since >= start
    if end is not None:
        keep &= since < end
    if keep.all():
        return chunk
    return select(chunk, keep)


# --- decoding ------------------------------------------------------------------


def decode(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Run the decode the arguments ask for; the summary (see ``--json``)."""
    if args.chunk < 1:
        raise UsageError(f"--chunk must be at least 1, got {args.chunk}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end ({args.end}) must be after --start ({args.start})")
    log: Path = args.log
    if not log.is_file():
        raise SourceError(f"cannot read log file {str(log)!r}: no such file")
    sources = _sources(args.dbc)
    selection = _selection(sources, args.message, args.signal)
    decoder = VectorDecoder(
        sources,
        choices=args.choices == "text",
        scaling=not args.no_scaling,
        selection=selection,
        engine=args.engine,
    )
    out: Path = args.output
    inputs = {log.resolve(), *(Path(s.partition("=")[2] or s).resolve() for s in args.dbc)}
    if out.resolve() in inputs:
        raise UsageError(f"the output {str(out)!r} is one of the inputs")
    fmt, layout, directory = _output(out, args.format, args.layout, len(decoder.outputs))
    warnings: list[str] = []
    if layout == "long" and fmt != "jsonl":
        inexact = inexact_in_long(decoder.outputs)
        if inexact:
            warnings.append(
                f"the long layout's float64 value column rounds integers beyond 2**53 of "
                f"{', '.join(inexact[:5])}{' …' if len(inexact) > 5 else ''}; "
                "the wide layout keeps them exact"
            )
    fallback = {o.name: o.fallback_reason for o in decoder.outputs if not o.vectorised}
    if fallback and args.engine == "vector":
        warnings.append(f"decoded frame by frame by cantools: {', '.join(sorted(fallback))}")
    metadata = {
        "log": log.name,
        "dbc": ", ".join(args.dbc),
        "choices": args.choices,
        "scaling": str(not args.no_scaling).lower(),
    }
    sink = open_sink(out, fmt, layout, decoder.outputs, directory=directory, metadata=metadata)
    frames = outside = 0
    first: float | None = None
    window = args.start is not None or args.end is not None
    cpu, wall = time.process_time(), time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("decode {task.description}"),
        TextColumn("{task.completed:,.0f} frames"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=args.quiet or not console.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task(log.name, total=None)
            reader, chunks = _frames(log, args.reader, args.chunk)
            for chunk in chunks:
                size = len(chunk)
                frames += size
                if first is None and size:
                    first = float(chunk.timestamp[0])
                if window and first is not None:
                    chunk = _window(chunk, first, args.start, args.end)
                    outside += size - len(chunk)
                sink.write(decoder.decode(chunk))
                progress.update(task, completed=frames)
        written = sink.close()
    except BaseException:
        sink.abort()
        raise
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counts = decoder.counts
    return {
        "log": str(log),
        "dbc": list(args.dbc),
        "output": [str(path) for path in written],
        "format": fmt,
        "layout": layout,
        "engine": args.engine,
        "reader": reader,
        "frames": frames,
        "frames_decoded": counts.frames_decoded,
        "samples": counts.samples,
        "unknown_ids": counts.unknown_ids,
        "decode_errors": counts.decode_errors,
        "skipped": counts.skipped,
        "not_selected": counts.not_selected,
        "outside_window": outside,
        "messages": dict(counts.by_message),
        "decode_errors_by_message": dict(counts.errors_by_message),
        "cantools_fallback": fallback,
        "seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 4),
        "frames_per_s": round(frames / wall, 1) if wall > 0 else 0.0,
        "frames_per_cpu_s": round(frames / cpu, 1) if cpu > 0 else 0.0,
        "warnings": warnings,
    }


def _print_summary(s: dict[str, Any], console: Console) -> None:
    for warning in s["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    files = s["output"]
    where = files[0] if len(files) == 1 else f"{len(files)} files in {Path(s['output'][0]).parent}"
    console.print(
        f"decode: {s['frames_decoded']:,} of {s['frames']:,} frames decoded, "
        f"{s['samples']:,} values → {where if files else 'no file'} "
        f"({s['format']}, {s['layout']}) in {s['seconds']:.2f} s "
        f"({s['frames_per_s']:,.0f} frames/s, {s['reader']} reader, {s['engine']} engine)",
        highlight=False,
    )
    skipped = {
        "unknown ids": s["unknown_ids"],
        "decode errors": s["decode_errors"],
        "remote/error frames": s["skipped"],
        "messages not selected": s["not_selected"],
        "outside the time window": s["outside_window"],
    }
    parts = [f"{count:,} {what}" for what, count in skipped.items() if count]
    if parts:
        console.print(f"decode: not decoded: {', '.join(parts)}", highlight=False)
