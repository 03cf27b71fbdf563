"""``telehub replay``: a CAN log becomes a virtual vehicle, or traffic on a CAN bus.

``--to HOST:PORT``: the log streams to a cloud gateway through the real agent
(``vehicle_agent.app.Agent``, built from ``AgentSettings`` exactly as
``telehub agent run --log`` builds it, so ``TELEHUB_*`` settings such as batch
size apply): reassembly, decoding, the pushed plan and consent, the durable
outbox and the uplink. The vehicle must be enrolled (``telehub cloud enroll``
prints its token). A rerun with the same outbox resumes where the last run
stopped; give another ``--outbox`` or ``--no-outbox`` to start over.

``--bus INTERFACE:CHANNEL[:BITRATE]``: the log's frames are sent on a python-can
bus (``virtual:replay0``, ``socketcan:vcan0``) as recorded: same ids, flags and
data, in file order; error frames are skipped (they cannot be sent), every
channel of the log goes to the one bus. No DBC is needed.

Timing: by default frames leave at the log's own pace, ``--speed N`` replays N
times faster, ``--max-speed`` as fast as possible. Ctrl-C stops reading; with
``--to`` what was read is still delivered (Ctrl-C again to quit at once; the
outbox keeps what is unacknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import can
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tools.agent_cmd import dbc_argument
from tools.cli import subcommand_main
from vehicle_agent.app import Agent, AgentReport
from vehicle_agent.config import AgentSettings
from vehicle_agent.errors import AgentError
from vehicle_agent.logs import read_columns
from vehicle_agent.logs.generic import open_reader

__all__ = ["BusReport", "ReplayError", "main", "register", "run", "send_log", "stream"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Seconds one frame may wait for room in the interface's transmit queue.
SEND_TIMEOUT = 1.0
#: Seconds between two progress updates (and checks of the agent's counters).
_TICK = 0.25
#: Seconds between two progress lines when stderr is not a terminal.
_LINE_EVERY = 10.0
# What opening a python-can interface raises: its own errors, and the
# ValueError/OSError/NotImplementedError/ImportError of a bad name, driver or device.
_OPEN_ERRORS = (can.CanError, ValueError, OSError, NotImplementedError, ImportError)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a CAN log as a virtual vehicle to a gateway, or onto a CAN bus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", type=Path, metavar="LOG", help="a CAN log python-can reads (MF4, BLF…)")
    p.add_argument(
        "--dbc",
        action="append",
        type=dbc_argument,
        default=[],
        metavar="PATH[:BUS[:CHANNEL]]",
        help="a DBC file as for `agent run`, repeatable (needed with --to)",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="HOST:PORT", help="the cloud gateway to stream to")
    target.add_argument(
        "--bus", type=_bus_spec, metavar="INTERFACE:CHANNEL[:BITRATE]", help="a python-can bus"
    )
    p.add_argument("--vehicle", help="with --to: the enrolled vehicle's id")
    p.add_argument("--token", help="with --to: the vehicle's token (default: TELEHUB_TOKEN)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=_positive, default=1.0, metavar="N", help="N times real time (default 1)"
    )
    pace.add_argument("--max-speed", action="store_true", help="as fast as possible")
    box = p.add_mutually_exclusive_group()
    box.add_argument(
        "--outbox", type=Path, help="with --to: the outbox (default telehub-replay/VEHICLE/)"
    )
    box.add_argument("--no-outbox", action="store_true", help="with --to: keep batches in memory")
    p.add_argument(
        "--connect-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="with --to: fail when the gateway does not answer within S seconds (default 10)",
    )
    p.add_argument(
        "--drain-timeout",
        type=_positive,
        default=120.0,
        metavar="S",
        help="with --to: seconds to wait for the last acknowledgements (default 120)",
    )
    p.add_argument("--fd", action="store_true", help="with --bus: open the bus as CAN FD")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``telehub replay`` on its own: *argv* without the command name; returns the exit code."""
    return subcommand_main("replay", register, argv)


@dataclass(frozen=True, slots=True)
class BusSpec:
    interface: str
    channel: str
    bitrate: int | None = None

    def __str__(self) -> str:
        rate = "" if self.bitrate is None else f":{self.bitrate}"
        return f"{self.interface}:{self.channel}{rate}"


def _bus_spec(text: str) -> BusSpec:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not INTERFACE:CHANNEL[:BITRATE]")
    try:
        bitrate = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"bit rate {parts[2]!r} is not a number") from None
    return BusSpec(parts[0], parts[1], bitrate)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


class ReplayError(Exception):
    """The replay cannot run or did not finish as asked (the message says why)."""


class _UsageError(Exception):
    """Options that do not go together (exit 2, like argparse's own usage errors)."""


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        if args.to is not None:
            summary, code = _to_gateway(args, console)
        else:
            summary, code = _to_bus(args, console)
    except _UsageError as exc:
        print(f"telehub replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ReplayError, AgentError, ValidationError, TimeoutError) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # before the replay began, or while the agent was stopping
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, Console())
    return code


def _only_with(args: argparse.Namespace, mode: str, names: Sequence[str]) -> None:
    for name in names:
        if getattr(args, name.replace("-", "_")) not in (None, False):
            raise _UsageError(f"--{name} goes with {mode}")


# ---------------------------------------------------------------- to a gateway


def _to_gateway(args: argparse.Namespace, console: Console) -> tuple[dict[str, Any], int]:
    _only_with(args, "--bus", ["fd"])
    token = args.token or os.environ.get("TELEHUB_TOKEN")
    if not args.vehicle:
        raise _UsageError("--to needs --vehicle")
    if not token:
        raise _UsageError("--to needs --token (or TELEHUB_TOKEN)")
    if not args.dbc:
        raise _UsageError("--to needs at least one --dbc")
    outbox = None if args.no_outbox else (args.outbox or _default_outbox(args.vehicle))
    settings = AgentSettings(
        vehicle_id=args.vehicle,
        token=SecretStr(token),
        gateway=args.to,
        dbc=args.dbc,
        log_file=args.log,
        realtime=not args.max_speed,
        speed=args.speed,
        outbox=outbox,
        # Set here so that TELEHUB_INTERFACE or TELEHUB_BUSES in the environment
        # cannot add a second source to the log.
        interface=None,
        channel=None,
        buses=[],
    )
    agent = Agent.from_settings(settings)
    pace = "as fast as possible" if args.max_speed else f"at {args.speed:g}x real time"
    console.print(f"replay: {args.log.name} to {args.to} as {args.vehicle}, {pace}")
    try:
        with _ticker(console, "streaming") as show:

            def tick(r: AgentReport) -> None:
                show(
                    r.frames_read,
                    f"{r.samples_sent:,} samples sent, {r.samples_acked:,} acknowledged",
                )

            report, interrupted = asyncio.run(
                stream(
                    agent,
                    connect_timeout=args.connect_timeout,
                    drain_timeout=args.drain_timeout,
                    tick=tick,
                    console=console,
                )
            )
    finally:
        agent.queue.close()
    summary = {
        "mode": "gateway",
        "log": str(args.log),
        "gateway": args.to,
        "vehicle": args.vehicle,
        "speed": None if args.max_speed else args.speed,
        "outbox": None if outbox is None else str(outbox),
        "interrupted": interrupted,
        **asdict(report),
    }
    if interrupted:
        return summary, EXIT_INTERRUPTED
    return summary, EXIT_ERROR if report.rejected_samples else EXIT_OK


def _default_outbox(vehicle: str) -> Path:
    # One outbox per vehicle: the agent numbers batches per outbox, and the
    # cloud counts sequences per vehicle.
    return Path("telehub-replay") / re.sub(r"[^A-Za-z0-9._-]", "_", vehicle) / "outbox.sqlite"


async def stream(
    agent: Agent,
    *,
    connect_timeout: float,
    drain_timeout: float,
    tick: Callable[[AgentReport], None] | None = None,
    console: Console | None = None,
) -> tuple[AgentReport, bool]:
    """Run *agent* to the end of its log; return its report and whether Ctrl-C stopped it.

    Raises :class:`ReplayError` when the gateway has not accepted the vehicle
    within *connect_timeout* seconds, and what :meth:`Agent.run` raises (the
    gateway refusing the vehicle, acknowledgements missing after
    *drain_timeout*).
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    task = asyncio.create_task(agent.run(drain_timeout=drain_timeout))
    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            agent.stop()  # stop reading; what was read is still delivered
            if console is not None:
                console.print("replay: stopping; delivering what was read (Ctrl-C again to quit)")
        else:
            task.cancel()

    with _on_sigint(loop, interrupt):
        connected = asyncio.create_task(agent.uplink.connected.wait())
        done, _ = await asyncio.wait(
            {task, connected}, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        connected.cancel()
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            last = agent.uplink.stats.last_error or "no answer"
            raise ReplayError(
                f"gateway {agent.uplink.target} did not accept the vehicle within "
                f"{connect_timeout:g} s ({last})"
            )
        while not task.done():
            await asyncio.wait({task}, timeout=_TICK)
            if tick is not None:
                tick(agent.report())
        try:
            report = task.result()
        except asyncio.CancelledError:  # the second Ctrl-C
            report = agent.report(time.monotonic() - started)
    return report, interrupts > 0


@contextlib.contextmanager
def _on_sigint(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> Iterator[None]:
    # Only the main thread of a Unix process can take signals on the loop; run
    # elsewhere (a test's worker thread), Ctrl-C keeps its default behaviour.
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (ValueError, RuntimeError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


# ---------------------------------------------------------------- onto a bus


@dataclass(slots=True)
class BusReport:
    """What one replay onto a bus did."""

    frames_read: int = 0
    frames_sent: int = 0
    error_frames_skipped: int = 0
    send_errors: int = 0
    last_error: str | None = None
    elapsed_seconds: float = 0.0
    interrupted: bool = False


def _to_bus(args: argparse.Namespace, console: Console) -> tuple[dict[str, Any], int]:
    _only_with(args, "--to", ["vehicle", "token", "outbox", "no-outbox"])
    if args.dbc:
        console.print("replay: --dbc is not used with --bus (frames are sent as recorded)")
    spec: BusSpec = args.bus
    open_reader(args.log).stop()  # a missing or unreadable log fails before the bus opens
    config: dict[str, Any] = {"fd": True} if args.fd else {}
    if spec.bitrate is not None:
        config["bitrate"] = spec.bitrate
    try:
        bus = can.Bus(interface=spec.interface, channel=spec.channel, **config)
    except _OPEN_ERRORS as exc:
        raise ReplayError(f"cannot open CAN bus {spec}: {type(exc).__name__}: {exc}") from exc
    speed = None if args.max_speed else args.speed
    pace = "as fast as possible" if speed is None else f"at {speed:g}x real time"
    console.print(f"replay: {args.log.name} onto {spec}, {pace}")
    report = BusReport()
    try:
        with _ticker(console, "sending") as show:

            def tick(r: BusReport) -> None:
                show(r.frames_sent, f"{r.send_errors:,} send errors")

            send_log(args.log, bus, speed=speed, report=report, tick=tick)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bus.shutdown()
    summary = {
        "mode": "bus",
        "log": str(args.log),
        "bus": str(spec),
        "speed": speed,
        **asdict(report),
    }
    if report.interrupted:
        return summary, EXIT_INTERRUPTED
    return summary, EXIT_ERROR if report.send_errors else EXIT_OK


def send_log(
    log: Path,
    bus: can.BusABC,
    *,
    speed: float | None,
    report: BusReport | None = None,
    tick: Callable[[BusReport], None] | None = None,
) -> BusReport:
    """Send the frames of *log* on *bus*, *speed* times faster than recorded (None: at once).

    Each frame is due at its offset from the log's first frame divided by
    *speed*, measured from the start, so sleep overshoot never accumulates
    (``can.MessageSync`` paces the same way but has no speed factor). A failed
    send is counted and the replay goes on. *report* (updated as frames go, so
    it holds the counts so far when Ctrl-C interrupts) is returned.
    """
    report = report if report is not None else BusReport()
    started = time.perf_counter()
    next_tick = started + _TICK
    first: float | None = None
    try:
        for chunk in read_columns(log):
            # python-can messages equal to its reader's: dlc of remote frames,
            # FD flags and all.
            for msg in chunk.messages():
                report.frames_read += 1
                if msg.is_error_frame:
                    report.error_frames_skipped += 1
                    continue
                if speed is not None:
                    if first is None:
                        first = msg.timestamp
                    delay = started + (msg.timestamp - first) / speed - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                # The log's channel would select the interface to send on (socketcan
                # sends to the interface named by msg.channel): the bus decides.
                msg.channel = None
                try:
                    bus.send(msg, timeout=SEND_TIMEOUT)
                except can.CanError as exc:
                    report.send_errors += 1
                    report.last_error = f"{type(exc).__name__}: {exc}"
                else:
                    report.frames_sent += 1
                if tick is not None and (now := time.perf_counter()) >= next_tick:
                    next_tick = now + _TICK
                    report.elapsed_seconds = now - started
                    tick(report)
    finally:
        report.elapsed_seconds = time.perf_counter() - started
        if tick is not None:
            tick(report)
    return report


# ---------------------------------------------------------------- output


@contextlib.contextmanager
def _ticker(console: Console, what: str) -> Iterator[Callable[[int, str], None]]:
    """Frames and rate on stderr: a live line on a terminal, a line now and then elsewhere."""
    started = time.monotonic()
    next_line = started + _LINE_EVERY
    live = console.is_terminal
    columns = (SpinnerColumn(), TextColumn(f"[bold]{what}"), TextColumn("{task.fields[text]}"))
    with Progress(
        *columns, TimeElapsedColumn(), console=console, transient=True, disable=not live
    ) as progress:
        task = progress.add_task(what, total=None, text="")

        def update(frames: int, detail: str) -> None:
            nonlocal next_line
            now = time.monotonic()
            text = f"{frames:,} frames ({frames / max(now - started, 1e-9):,.0f}/s), {detail}"
            if live:
                progress.update(task, text=text)
            elif now >= next_line:
                next_line = now + _LINE_EVERY
                console.print(f"replay: {what} {text}", highlight=False)

        yield update


def _print_summary(s: dict[str, Any], console: Console) -> None:
    seconds = s["elapsed_seconds"]
    rate = s["frames_read"] / seconds if seconds > 0 else 0.0
    rows: list[tuple[str, str]]
    if s["mode"] == "gateway":
        resumed = f" (after {s['frames_resumed']:,} sent before)" if s["frames_resumed"] else ""
        rows = [
            ("vehicle", f"{s['vehicle']} via {s['gateway']}"),
            ("frames read", f"{s['frames_read']:,}{resumed}"),
            ("frames decoded", f"{s['frames_decoded']:,}"),
            ("samples sent", f"{s['samples_sent']:,} in {s['batches']:,} batches"),
            ("samples acknowledged", f"{s['samples_acked']:,}"),
            ("samples rejected", f"{s['rejected_samples']:,}"),
            ("outbox", s["outbox"] or "none (memory only)"),
        ]
    else:
        last = f" (last: {s['last_error']})" if s["last_error"] else ""
        rows = [
            ("bus", s["bus"]),
            ("frames read", f"{s['frames_read']:,}"),
            ("frames sent", f"{s['frames_sent']:,}"),
            ("error frames skipped", f"{s['error_frames_skipped']:,}"),
            ("send errors", f"{s['send_errors']:,}{last}"),
        ]
    rows.append(("duration", f"{seconds:.1f} s, {rate:,.0f} frames/s"))
    if s["interrupted"]:
        rows.append(("stopped", "by Ctrl-C before the end of the log"))
    t = Table(show_header=False, box=None, padding=(0, 2))
    for name, value in rows:
        t.add_row(name, Text(value))  # values are data (paths, errors), not markup
    console.print(t, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
