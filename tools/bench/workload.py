"""What a benchmark feeds the agent: a log file in the format under test, and a plan.

:func:`prepare_log` writes the frames of a recording into a temporary log of the
format both sides of a comparison read (python-can's writer for the suffix), so
that the reader measured is that format's and not the source's: the bundled
recording is an MF4 file, and python-can's MF4 reader alone reads only ~41k
frames/s here. :func:`typical_plan` is the realistic plan ``--plan typical``
pushes for the bundled recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import can

from telehub.v1 import telemetry_pb2 as pb

__all__ = [
    "FORMATS",
    "TYPICAL_PLAN_DOC",
    "PreparedLog",
    "WorkloadError",
    "prepare_log",
    "typical_plan",
]

#: Formats a comparison may read, by the name the CLI takes (the file suffix).
FORMATS = ("blf", "asc", "log", "mf4")


class WorkloadError(Exception):
    """The recording cannot be turned into the benchmark's log (message says why)."""


@dataclass(frozen=True, slots=True)
class PreparedLog:
    """The log both sides read: ``converted`` is False when it is the source itself."""

    path: Path
    frames: int
    converted: bool


def prepare_log(source: Path, fmt: str, folder: Path, frames: int | None = None) -> PreparedLog:
    """The log of format *fmt* holding *frames* frames of *source* (all when None).

    When *frames* exceeds the recording, it is replayed again from its start with
    the timestamps shifted by its duration, so time keeps moving forward. The
    source is used as it is when it already has the format and no limit is asked.
    """
    if fmt not in FORMATS:
        raise WorkloadError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if frames is not None and frames < 1:
        raise WorkloadError(f"--frames must be at least 1, got {frames}")
    if source.suffix.lower() == f".{fmt}" and frames is None:
        return PreparedLog(source, _count(source), converted=False)
    target = folder / f"{source.stem}.{fmt}"
    written = 0
    try:
        with can.Logger(str(target)) as writer:
            for msg in _frames(source, frames):
                writer.on_message_received(msg)
                written += 1
    except (OSError, ValueError, can.CanError) as exc:
        raise WorkloadError(f"cannot convert {source} to {fmt}: {exc}") from exc
    if written == 0:
        raise WorkloadError(f"{source} holds no frames")
    return PreparedLog(target, written, converted=True)


def _frames(source: Path, limit: int | None) -> Iterator[can.Message]:
    shift = 0.0
    given = 0
    while True:
        first = last = None
        in_pass = 0
        with can.LogReader(str(source)) as reader:
            for msg in reader:
                if limit is not None and given >= limit:
                    return
                first = msg.timestamp if first is None else first
                last = msg.timestamp
                if shift:
                    msg.timestamp += shift
                yield msg
                given += 1
                in_pass += 1
        if limit is None or first is None or last is None:
            return
        # The next pass starts one mean frame gap after this one's last frame.
        duration = last - first
        shift += duration + duration / max(in_pass - 1, 1)


def _count(path: Path) -> int:
    with can.LogReader(str(path)) as reader:
        return sum(1 for _ in reader)


#: What ``--plan typical`` runs, for the help text and the JSON output.
TYPICAL_PLAN_DOC = (
    "plan 'bench-typical' v1: Speed (0.1 m/s), Heading (1 deg), Altitude (1 m), "
    "AccelerationX/Y (0.5 m/s^2), Satellites, FixType and DistanceTotal on change with "
    "those deadbands and a 10 s heartbeat on Speed; trigger 'hard_braking' when "
    "AccelerationX < -4 (rising edge, at most every 10 s) captures Speed and "
    "AccelerationX 2 s before to 2 s after; all for diagnostics (location is not consented)"
)

# (signal, deadband): sent when they moved by more than the deadband.
_ON_CHANGE = (
    ("Speed", 0.1),
    ("Heading", 1.0),
    ("Altitude", 1.0),
    ("AccelerationX", 0.5),
    ("AccelerationY", 0.5),
    ("Satellites", 0.0),
    ("FixType", 0.0),
    ("DistanceTotal", 0.0),
)


def typical_plan() -> pb.CollectionPlan:
    """A realistic plan for the bundled drive recording's DBC (see :data:`TYPICAL_PLAN_DOC`)."""
    plan = pb.CollectionPlan(version=1, name="bench-typical")
    for name, deadband in _ON_CHANGE:
        plan.signals.add(
            signal=pb.SignalRef(name=name),
            purpose=pb.PURPOSE_DIAGNOSTICS,
            mode=pb.SAMPLING_MODE_ON_CHANGE,
            deadband=deadband,
            heartbeat_ms=10_000 if name == "Speed" else 0,
        )
    plan.triggers.add(
        name="hard_braking",
        condition="AccelerationX < -4",
        mode=pb.TRIGGER_MODE_RISING_EDGE,
        min_interval_ms=10_000,
        pre_ms=2_000,
        post_ms=2_000,
        capture=[pb.SignalRef(name="Speed"), pb.SignalRef(name="AccelerationX")],
        purpose=pb.PURPOSE_DIAGNOSTICS,
    )
    return plan
