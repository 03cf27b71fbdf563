"""Peak resident memory of this process around a piece of work, and of a child process.

In this process: the kernel's high-water mark of the resident set (``VmHWM`` in
``/proc/self/status``), brought down to the current resident set by writing
``5`` to ``/proc/self/clear_refs`` (Linux 4.0 and later) just before the work,
and read just after it. A child (a Python module run by :func:`run_python`)
reads its own ``VmHWM`` as it exits: its ``ru_maxrss`` would not do, as Linux
keeps in it the resident set of the process it was forked from, before its
``exec`` (here the benchmark's, often the larger). Where these are not
available (another system, an older kernel, a ``/proc`` that refuses) the
figures are None, never a guess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["PROC_SELF", "ChildRun", "PeakWatch", "run_python", "status_bytes"]

#: Where Linux tells a process about itself.
PROC_SELF = Path("/proc/self")
_RESET_PEAK = "5"  # clear_refs: reset the peak resident set size to the current one


def status_bytes(field: str, proc: Path = PROC_SELF) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or None."""
    try:
        text = (proc / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number, _, unit = value.strip().partition(" ")
            if unit == "kB" and number.isdigit():
                return int(number) * 1024
    return None


class PeakWatch:
    """The peak resident set of this process from its creation to :meth:`peak`.

    Create it right before the work: the kernel's high-water mark is reset to
    the resident set of that moment (:attr:`start_bytes`). *proc* is where the
    process's ``status`` and ``clear_refs`` are.
    """

    def __init__(self, proc: Path = PROC_SELF) -> None:
        self._proc = proc
        try:
            with (proc / "clear_refs").open("w") as refs:
                refs.write(_RESET_PEAK)
        except OSError:  # not Linux, a kernel before 4.0, or not allowed
            self._reset = False
        else:
            self._reset = True
        self.start_bytes = status_bytes("VmRSS", proc) if self._reset else None

    def peak(self) -> int | None:
        """The peak so far, in bytes; None when it could not be reset or read.

        Never below :attr:`start_bytes`: the kernel folds a thread's growth into
        the high-water mark lazily, so memory taken and given back again right
        after the reset can leave ``VmHWM`` under the resident set read then.
        """
        if not self._reset:
            return None
        peak = status_bytes("VmHWM", self._proc)
        if peak is None or self.start_bytes is None:
            return peak
        return max(peak, self.start_bytes)


@dataclass(frozen=True, slots=True)
class ChildRun:
    """How a child process ended and what it used (its own CPU time, from ``wait4``)."""

    returncode: int
    cpu_seconds: float
    wall_seconds: float
    peak_rss_bytes: int | None


# Runs a module as ``python -m`` does, or calls ``module:function`` with the
# arguments and exits with what it returns, and writes the peak resident set
# (bytes, or nothing) to the file named first when the interpreter exits.
_LAUNCHER = """
import atexit, importlib, runpy, sys

def report(path=sys.argv[1]):
    peak = ""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:") and line.split()[2] == "kB":
                    peak = str(int(line.split()[1]) * 1024)
    except OSError:
        pass
    with open(path, "w") as out:
        out.write(peak)

atexit.register(report)
target, args = sys.argv[2], sys.argv[3:]
module, _, function = target.partition(":")
sys.argv = [module, *args]
if function:
    sys.exit(getattr(importlib.import_module(module), function)(args))
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def run_python(
    target: str,
    args: Sequence[str],
    *,
    report: Path,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    cwd: Path | None = None,
) -> ChildRun:
    """``python -m MODULE ARGS``, or ``MODULE:FUNCTION(ARGS)``, in a child process to its end.

    Returns the child's exit code, its own CPU time and its peak resident set;
    a function is called with the list of arguments and returns the exit code.

    *report* is a scratch file for the child's figure (removed here); *cwd* its
    working directory (and where it finds the module first). Its output must go
    to files or be inherited, not to pipes this process would have to read
    while it waits.
    """
    command = [sys.executable, "-c", _LAUNCHER, str(report), target, *args]
    wall = time.perf_counter()
    child = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:
        child.kill()
        child.wait()
        raise
    wall = time.perf_counter() - wall
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    try:
        text = report.read_text().strip()
    except OSError:  # it died before writing it
        text = ""
    finally:
        report.unlink(missing_ok=True)
    peak = int(text) if text.isdigit() else None
    return ChildRun(child.returncode, usage.ru_utime + usage.ru_stime, wall, peak)
