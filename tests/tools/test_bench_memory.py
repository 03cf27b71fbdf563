"""Peak memory figures: this process's around a piece of work, and a child's own.

The figures come from Linux's /proc; elsewhere they must be None, never wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.bench.memory import PeakWatch, run_python, status_bytes

LINUX_PEAK = PeakWatch().peak() is not None
linux_only = pytest.mark.skipif(not LINUX_PEAK, reason="needs /proc/self/clear_refs (Linux 4.0+)")
MIB = 2**20


@linux_only
def test_peak_covers_memory_the_work_touched() -> None:
    watch = PeakWatch()
    start = watch.start_bytes
    assert start is not None
    block = np.ones(64 * MIB, dtype=np.uint8)  # touched: resident
    del block
    peak = watch.peak()
    assert peak is not None
    assert peak >= start + 60 * MIB
    # A new watch starts from what is resident now, not from the old peak.
    assert (PeakWatch().peak() or 0) < peak - 32 * MIB


def test_no_proc_gives_none(tmp_path: Path) -> None:
    watch = PeakWatch(tmp_path / "missing")
    assert watch.start_bytes is None
    assert watch.peak() is None
    assert status_bytes("VmRSS", tmp_path / "missing") is None


def test_status_fields_in_bytes(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n")
    assert status_bytes("VmHWM", tmp_path) == 2048 * 1024
    assert status_bytes("VmRSS", tmp_path) == 1024 * 1024
    assert status_bytes("VmSwap", tmp_path) is None


@linux_only
def test_child_reports_its_own_peak(tmp_path: Path) -> None:
    # This process holds 200 MiB when the child is forked from it: the child's
    # figure must be its own (its ru_maxrss would be at least this process's).
    held = np.ones(200 * MIB, dtype=np.uint8)
    (tmp_path / "allocate.py").write_text(
        "import sys\nblock = b'x' * int(sys.argv[1])\nsys.exit(3)\n"
    )
    done = run_python("allocate", [str(100 * MIB)], report=tmp_path / "peak", cwd=tmp_path)
    del held
    assert done.returncode == 3
    assert done.peak_rss_bytes is not None
    assert 100 * MIB < done.peak_rss_bytes < 190 * MIB
    assert done.cpu_seconds > 0
    assert not (tmp_path / "peak").exists()
