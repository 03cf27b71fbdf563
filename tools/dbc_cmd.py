"""``telehub dbc``: what a DBC file defines, and what cantools rejects in it.

Prints every message (identifier, length, senders, cycle time, CAN FD, and for
J1939 files the parameter group number, priority and source address) and
every signal (bit layout, scaling, range, unit, receivers, value
descriptions, multiplexing, comments) as tables, or as one JSON object with
``--json``.

The file is loaded the way the agent loads it (``vehicle_agent.catalog``):
non-strictly, because real files often fail cantools' strict checks
(overlapping signals, signals past the frame's end) while the rest decodes.
It is also loaded strictly, and what the strict checks reject is listed as
warnings, one per message at fault; ``--strict`` makes those errors. A file
cantools cannot load at all is an error naming the file and cantools' reason.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cantools.database.can import Database, Message, Signal
from cantools.database.errors import Error as CantoolsError
from rich.console import Console
from rich.table import Table

from tools.cli import subcommand_main
from vehicle_agent.catalog import is_j1939_database, j1939_pgn, read_dbc
from vehicle_agent.errors import DbcError

__all__ = ["DbcReport", "NoSuchMessage", "describe", "inspect_dbc", "main", "register", "run"]

_EXIT_OK = 0
_EXIT_ERROR = 1
_PDU2_MIN_PF = 240
#: Table width when stdout is not a terminal (rich would pick 80 columns, which
#: folds a signal table into an unreadable column of fragments).
_PIPE_WIDTH = 180
_COMMENT_CHARS = 60
_CHOICES_SHOWN = 4


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dbc",
        help="show a DBC file's messages and signals, and what cantools rejects in it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dbc", type=Path, metavar="DBC", help="the DBC file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) when cantools' strict checks reject the file, instead of warning",
    )
    p.add_argument(
        "--message", metavar="NAME", help="only this message (its name, or its id like 0x123)"
    )
    p.set_defaults(handler=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``telehub dbc`` on its own: *argv* without the command name; returns the exit code."""
    return subcommand_main("dbc", register, argv)


class NoSuchMessage(Exception):
    """``--message`` names no message of the file (the text says which are close)."""


@dataclass(frozen=True, slots=True)
class DbcReport:
    """A DBC file loaded as the agent loads it, with what the strict checks reject."""

    path: Path
    database: Database
    strict_problems: tuple[str, ...]


def inspect_dbc(path: Path, *, strict: bool = False) -> DbcReport:
    """Load *path* strictly and non-strictly and say what the strict checks reject.

    Raises :class:`DbcError` when cantools cannot load the file at all, or, with
    *strict*, when the strict checks reject anything.
    """
    try:
        read_dbc(path, strict=True)
    except DbcError as strict_error:
        database = read_dbc(path, strict=False).database  # raises when both fail
        problems = _strict_problems(database) or [strict_error.reason]
        if strict:
            raise DbcError(path, "strict checks failed: " + "; ".join(problems)) from strict_error
        return DbcReport(path, database, tuple(problems))
    # Parsed twice on purpose: the strict load rebuilt codecs under strict rules;
    # the agent decodes with the non-strict database, so that is what is shown.
    return DbcReport(path, read_dbc(path, strict=False).database, ())


def _strict_problems(database: Database) -> list[str]:
    # cantools stops at the first message that fails; checking each message on
    # its own lists every one of them.
    problems: list[str] = []
    for message in database.messages:
        try:
            message.refresh(strict=True)
        except CantoolsError as exc:
            problems.append(str(exc))
    return problems


def run(args: argparse.Namespace) -> int:
    try:
        report = inspect_dbc(args.dbc, strict=args.strict)
        messages = _select(report, args.message)
    except (DbcError, NoSuchMessage) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return _EXIT_ERROR
    data = describe(report, messages)
    for problem in report.strict_problems:
        print(f"telehub: warning: strict check: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print(data, _stdout_console())
    return _EXIT_OK


def _select(report: DbcReport, wanted: str | None) -> list[Message]:
    messages: list[Message] = list(report.database.messages)
    if wanted is None:
        return messages
    frame_id: int | None
    try:
        frame_id = int(wanted, 0)
    except ValueError:
        frame_id = None
    chosen = [m for m in messages if m.name == wanted or m.frame_id == frame_id]
    if chosen:
        return chosen
    close = difflib.get_close_matches(wanted, [m.name for m in messages], n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NoSuchMessage(f"{report.path}: no message {wanted!r}{hint}")


# ---------------------------------------------------------------- plain data


def describe(report: DbcReport, messages: Sequence[Message] | None = None) -> dict[str, Any]:
    """The file's content as plain data (what ``--json`` prints)."""
    db = report.database
    j1939 = is_j1939_database(db)
    chosen = db.messages if messages is None else messages
    return {
        "file": str(report.path),
        "version": db.version or None,
        "j1939": j1939,
        "strict_ok": not report.strict_problems,
        "warnings": [f"strict check: {p}" for p in report.strict_problems],
        "nodes": [{"name": n.name, "comment": n.comment} for n in db.nodes],
        "message_count": len(db.messages),
        "signal_count": sum(len(m.signals) for m in db.messages),
        "messages": [_message(m, j1939) for m in chosen],
    }


def _message(m: Message, j1939: bool) -> dict[str, Any]:
    return {
        "name": m.name,
        "frame_id": m.frame_id,
        "id_hex": f"0x{m.frame_id:X}",
        "is_extended": m.is_extended_frame,
        "length": m.length,
        "is_fd": m.is_fd,
        "senders": list(m.senders),
        "cycle_time_ms": m.cycle_time,
        "send_type": m.send_type,
        "comment": m.comment,
        "is_multiplexed": m.is_multiplexed(),
        "j1939": _j1939(m.frame_id) if j1939 and m.is_extended_frame else None,
        "signals": [_signal(s) for s in m.signals],
    }


def _j1939(frame_id: int) -> dict[str, int | None]:
    pdu_format = (frame_id >> 16) & 0xFF
    return {
        "pgn": j1939_pgn(frame_id),
        "priority": (frame_id >> 26) & 0x7,
        "source": frame_id & 0xFF,
        # PDU1 (format below 240): the PDU-specific byte is a destination address.
        "destination": (frame_id >> 8) & 0xFF if pdu_format < _PDU2_MIN_PF else None,
    }


def _signal(s: Signal) -> dict[str, Any]:
    choices = dict(s.choices or {})
    return {
        "name": s.name,
        "start": s.start,
        "length": s.length,
        "byte_order": s.byte_order,
        "is_signed": s.is_signed,
        "is_float": s.is_float,
        "scale": s.scale,
        "offset": s.offset,
        "minimum": s.minimum,
        "maximum": s.maximum,
        "unit": s.unit,
        "receivers": list(s.receivers),
        # JSON keys are text; the raw values are integers in the file.
        "choices": {str(v): _label(label) for v, label in sorted(choices.items())},
        "is_multiplexer": s.is_multiplexer,
        "multiplexer_signal": s.multiplexer_signal,
        "multiplexer_ids": list(s.multiplexer_ids) if s.multiplexer_ids else None,
        "spn": s.spn,
        "comment": s.comment,
    }


def _label(value: object) -> str:
    # cantools gives NamedSignalValue objects (or plain strings) as labels.
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value)


# ---------------------------------------------------------------- tables


def _stdout_console() -> Console:
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=_PIPE_WIDTH if piped else None)


def _print(data: dict[str, Any], console: Console) -> None:
    nodes = ", ".join(n["name"] for n in data["nodes"]) or "none"
    console.print(
        f"[bold]{data['file']}[/]: {data['message_count']} messages, "
        f"{data['signal_count']} signals; nodes: {nodes}; "
        f"J1939: {'yes' if data['j1939'] else 'no'}; "
        f"strict checks: {'pass' if data['strict_ok'] else 'FAIL (see warnings)'}",
        highlight=False,
    )
    console.print(_messages_table(data), highlight=False)
    for m in data["messages"]:
        if m["signals"]:
            console.print(_signals_table(m), highlight=False)


def _messages_table(data: dict[str, Any]) -> Table:
    t = Table(title="messages", title_justify="left")
    t.add_column("message", overflow="fold")
    t.add_column("id", justify="right")
    t.add_column("ext")
    t.add_column("len", justify="right")
    t.add_column("FD")
    t.add_column("cycle ms", justify="right")
    t.add_column("senders", overflow="fold")
    if data["j1939"]:
        t.add_column("PGN", justify="right")
        t.add_column("prio", justify="right")
        t.add_column("src", justify="right")
    t.add_column("signals", justify="right")
    t.add_column("comment")
    for m in data["messages"]:
        row = [
            m["name"],
            m["id_hex"],
            "yes" if m["is_extended"] else "",
            str(m["length"]),
            "yes" if m["is_fd"] else "",
            "" if m["cycle_time_ms"] is None else str(m["cycle_time_ms"]),
            ", ".join(m["senders"]),
        ]
        if data["j1939"]:
            j = m["j1939"]
            row += (
                [f"{j['pgn']} (0x{j['pgn']:05X})", str(j["priority"]), f"0x{j['source']:02X}"]
                if j
                else ["", "", ""]
            )
        row += [str(len(m["signals"])), _brief(m["comment"])]
        t.add_row(*row)
    return t


def _signals_table(m: dict[str, Any]) -> Table:
    t = Table(title=f"{m['name']} ({m['id_hex']}) signals", title_justify="left")
    t.add_column("signal", overflow="fold")
    t.add_column("start|len", justify="right")
    t.add_column("order")
    t.add_column("type")
    t.add_column("scale, offset", justify="right")
    t.add_column("range", justify="right")
    t.add_column("unit")
    t.add_column("receivers", overflow="fold")
    t.add_column("mux")
    t.add_column("choices")
    t.add_column("comment")
    for s in m["signals"]:
        t.add_row(
            s["name"],
            f"{s['start']}|{s['length']}",
            "LE" if s["byte_order"] == "little_endian" else "BE",
            "float" if s["is_float"] else ("signed" if s["is_signed"] else "unsigned"),
            f"{s['scale']:g}, {s['offset']:g}",
            _range(s["minimum"], s["maximum"]),
            s["unit"] or "",
            ", ".join(s["receivers"]),
            _mux(s),
            _choices(s["choices"]),
            _brief(s["comment"]),
        )
    return t


def _range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    return f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"


def _mux(s: dict[str, Any]) -> str:
    if s["is_multiplexer"]:
        return "multiplexer"
    if s["multiplexer_ids"]:
        ids = ",".join(str(i) for i in s["multiplexer_ids"])
        return f"{s['multiplexer_signal']}={ids}"
    return ""


def _choices(choices: dict[str, str]) -> str:
    items = [f"{value}={label}" for value, label in choices.items()]
    shown = ", ".join(items[:_CHOICES_SHOWN])
    more = len(items) - _CHOICES_SHOWN
    return f"{shown}, … (+{more})" if more > 0 else shown


def _brief(comment: str | None) -> str:
    if not comment:
        return ""
    first = comment.strip().splitlines()[0] if comment.strip() else ""
    return first if len(first) <= _COMMENT_CHARS else first[: _COMMENT_CHARS - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
