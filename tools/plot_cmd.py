"""``telehub plot``: chosen signals of a CAN log over time, as a PNG (or SVG, PDF).

The log is decoded by the agent's own decoder (``vehicle_agent.decoding``) with
the DBC files given, so the plot shows exactly the values the agent would send.
Time is in seconds from the log's first frame; ``--start`` and ``--end`` cut a
window in those seconds. Signals with the same unit share a subplot (and its
y axis); each subplot is labelled with its unit. A signal is named ``Signal``,
``Message.Signal`` when several messages have a signal of that name, or
``BUS.Message.Signal`` when several DBC files define the same message. A DBC is
given as for ``telehub agent run``: ``PATH[:BUS[:CHANNEL]]``.

Drawing is headless: matplotlib's Agg canvas through ``Figure`` objects, never
pyplot, so no display, backend switch or global figure state is involved.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tools.agent_cmd import dbc_argument
from tools.cli import subcommand_main
from vehicle_agent.catalog import Catalog, DbcSpec, SignalSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import DbcError, SourceError
from vehicle_agent.sources import LogSource

__all__ = [
    "PlotError",
    "Series",
    "check_output",
    "collect",
    "draw",
    "main",
    "qualified",
    "register",
    "resolve",
    "run",
]

_EXIT_OK = 0
_EXIT_ERROR = 1
#: Figure geometry: every subplot gets the same height, so the PNG's size in
#: pixels is predictable (width x height per subplot x subplots).
WIDTH_IN = 12.0
AXIS_HEIGHT_IN = 3.0
DPI = 100
#: Frames between two progress updates (a callback per frame would cost more
#: than decoding the selected messages).
_PROGRESS_EVERY = 8192
#: Logs of several channels are sorted per channel, not always across them:
#: reading stops this many seconds past --end, not at the first later frame.
_END_SLACK_S = 1.0
#: A signal with this many value descriptions or fewer gets them as y tick labels.
_MAX_CHOICE_TICKS = 12

#: Told (frames read, seconds into the log) now and then while decoding.
ProgressCallback = Callable[[int, float], None]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plot",
        help="plot signals of a CAN log over time to a PNG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", type=Path, metavar="LOG", help="a CAN log python-can reads (MF4, BLF…)")
    p.add_argument(
        "--dbc",
        action="append",
        type=dbc_argument,
        required=True,
        metavar="PATH[:BUS[:CHANNEL]]",
        help="a DBC file, repeatable",
    )
    p.add_argument(
        "--signal",
        action="append",
        required=True,
        metavar="NAME",
        help="Signal, Message.Signal or BUS.Message.Signal; repeatable",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="the image to write (.png; .svg and .pdf work too)",
    )
    p.add_argument("--start", type=float, metavar="S", help="from S seconds after the first frame")
    p.add_argument("--end", type=float, metavar="S", help="up to S seconds after the first frame")
    p.add_argument("--title", help="the figure's title (default: the log's file name)")
    p.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``telehub plot`` on its own: *argv* without the command name; returns the exit code."""
    return subcommand_main("plot", register, argv)


class PlotError(Exception):
    """The plot cannot be made as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One signal's samples: seconds from the log's first frame, and values."""

    name: str
    spec: SignalSpec
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.times.shape[0])


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.start is not None and args.end is not None and args.end <= args.start:
            raise PlotError(f"--end ({args.end:g}) must be after --start ({args.start:g})")
        check_output(args.output)
        specs = [d.spec() for d in args.dbc]
        with _progress(console, args.end) as report:
            series = collect(
                args.log, specs, args.signal, start=args.start, end=args.end, progress=report
            )
        width, height = draw(series, args.output, title=args.title or args.log.name)
    except (PlotError, DbcError, SourceError) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    for s in series:
        unit = f" {s.spec.unit}" if s.spec.unit else ""
        print(
            f"{s.name}: n={len(s)}, {s.values.min():g} to {s.values.max():g}{unit}, "
            f"{s.times[0]:.3f} s to {s.times[-1]:.3f} s"
        )
    print(f"wrote {args.output} ({width}x{height} px)")
    return _EXIT_OK


@contextmanager
def _progress(console: Console, end: float | None) -> Iterator[ProgressCallback]:
    # With --end the log's time gives a real bar; without, the bar only pulses.
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]decoding"),
        BarColumn(),
        TextColumn("{task.fields[frames]:,} frames, {task.completed:,.1f} s of log"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Off when stderr is not a terminal: rich would leave blank lines there.
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("decoding", total=end, frames=0)

        def report(frames: int, seconds: float) -> None:
            progress.update(task, completed=seconds, frames=frames)

        yield report


# ---------------------------------------------------------------- the data


def resolve(catalog: Catalog, selectors: Sequence[str]) -> list[SignalSpec]:
    """The catalog signals *selectors* name, in order, each once.

    Raises :class:`PlotError` for a name that matches nothing (with close
    matches) or several signals (with the qualified names to choose from).
    """
    chosen: list[SignalSpec] = []
    for selector in selectors:
        parts = selector.split(".")
        if len(parts) > 3 or not all(parts):
            raise PlotError(f"{selector!r} is not Signal, Message.Signal or BUS.Message.Signal")
        found = [s for s in catalog if _names(s)[-len(parts) :] == tuple(parts)]
        if not found:
            raise PlotError(f"unknown signal {selector!r}{_suggest(catalog, selector)}")
        if len(found) > 1:
            candidates = ", ".join(qualified(s, catalog) for s in found)
            raise PlotError(f"signal {selector!r} is ambiguous; choose one of: {candidates}")
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


def _names(spec: SignalSpec) -> tuple[str, str, str]:
    return (spec.bus, spec.message, spec.name)


def qualified(spec: SignalSpec, catalog: Catalog) -> str:
    """``Message.Signal``, or ``BUS.Message.Signal`` when another bus has the same pair."""
    same = sum(1 for s in catalog if (s.message, s.name) == (spec.message, spec.name))
    return ".".join(_names(spec)[0 if same > 1 else 1 :])


def _suggest(catalog: Catalog, selector: str) -> str:
    choices = {s.name for s in catalog} | {f"{s.message}.{s.name}" for s in catalog}
    close = difflib.get_close_matches(selector, sorted(choices), n=5, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def collect(
    log: Path,
    specs: Sequence[DbcSpec],
    selectors: Sequence[str],
    *,
    start: float | None = None,
    end: float | None = None,
    progress: ProgressCallback | None = None,
) -> list[Series]:
    """Decode *log* and return the samples of the signals *selectors* name.

    Times are seconds from the log's first frame (of any id or channel); only
    samples between *start* and *end* (inclusive, in those seconds) are kept.
    Raises :class:`PlotError` for an unknown, ambiguous or absent signal, and
    the agent's :class:`DbcError` / :class:`SourceError` for unreadable files.
    """
    decoder = Decoder(specs)
    wanted = resolve(decoder.catalog, selectors)
    indices = {s.index: n for n, s in enumerate(wanted)}
    # Only the messages carrying a chosen signal are decoded at all.
    decoder.select(frozenset(indices))
    times: list[list[float]] = [[] for _ in wanted]
    values: list[list[float]] = [[] for _ in wanted]
    low = -np.inf if start is None else start
    high = np.inf if end is None else end
    first: float | None = None
    frames = 0
    seconds = 0.0
    with LogSource(log) as source:
        for frame in source:
            if first is None:
                first = frame.timestamp
            seconds = frame.timestamp - first
            frames += 1
            if progress is not None and frames % _PROGRESS_EVERY == 0:
                progress(frames, seconds)
            if seconds > high + _END_SLACK_S:
                break
            if not low <= seconds <= high:
                continue
            for index, value in decoder.decode(frame):
                slot = indices.get(index)
                if slot is not None:
                    times[slot].append(seconds)
                    values[slot].append(float(value))
    if progress is not None:
        progress(frames, seconds)
    if first is None:
        raise PlotError(f"{log} holds no frames")
    missing = [qualified(s, decoder.catalog) for s, t in zip(wanted, times, strict=True) if not t]
    if missing:
        window = "" if start is None and end is None else f" between {low:g} s and {high:g} s"
        raise PlotError(
            f"never in {log}{window}: {', '.join(missing)} "
            f"({frames:,} frames read, {decoder.stats.decoded:,} of the chosen messages decoded)"
        )
    return [
        Series(
            qualified(s, decoder.catalog),
            s,
            np.asarray(t, dtype=np.float64),
            np.asarray(v, dtype=np.float64),
        )
        for s, t, v in zip(wanted, times, values, strict=True)
    ]


# ---------------------------------------------------------------- the drawing


def check_output(output: Path) -> None:
    """Fail before decoding, not after, when *output* cannot be written as an image."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = output.suffix.lower().removeprefix(".")
    if suffix not in formats:
        raise PlotError(f"cannot write {output}: give a file ending in .png, .svg or .pdf")
    if not output.parent.is_dir():
        raise PlotError(f"cannot write {output}: no folder {output.parent}")


def draw(series: Sequence[Series], output: Path, *, title: str) -> tuple[int, int]:
    """Draw *series*, one subplot per unit, into *output*; return its size in pixels."""
    # Imported here: matplotlib costs ~0.3 s to import, which every other
    # telehub command would pay when the CLI imports this module.
    from matplotlib.figure import Figure

    by_unit: dict[str, list[Series]] = {}
    for s in series:
        by_unit.setdefault(s.spec.unit, []).append(s)
    rows = len(by_unit)
    fig = Figure(figsize=(WIDTH_IN, AXIS_HEIGHT_IN * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (unit, group) in zip(axes, by_unit.items(), strict=True):
        for s in group:
            ax.plot(s.times, s.values, label=s.name, linewidth=0.9)
        ax.set_ylabel(unit or "(no unit)")
        ax.grid(visible=True, alpha=0.3)
        # A fixed corner: "best" scans every point and is slow on long logs.
        ax.legend(loc="upper right", fontsize="small")
        if len(group) == 1 and 0 < len(group[0].spec.choices) <= _MAX_CHOICE_TICKS:
            ticks, labels = zip(*group[0].spec.choices, strict=True)
            ax.set_yticks(ticks, labels)
    axes[-1].set_xlabel("seconds from the log's first frame")
    fig.suptitle(title)
    try:
        fig.savefig(output)
    except OSError as exc:
        raise PlotError(f"cannot write {output}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a suffix no matplotlib backend writes
        raise PlotError(f"cannot write {output}: {exc}") from exc
    width, height = fig.canvas.get_width_height()
    return int(width), int(height)


if __name__ == "__main__":
    sys.exit(main())
