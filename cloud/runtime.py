"""Process-level helpers of the HTTP services (the recommendation API, the CRM).

``run_fast`` runs a service's main coroutine on uvloop; ``freeze_long_lived``
takes what startup built out of the garbage collector's reach. The loop was
measured on ``telehub bench recommend`` (the default loop cost each request
more CPU); the collector on both benchmarks: full collections walking the
startup heap paused a process 50-165 ms, the whole p99 of a latency target.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["freeze_long_lived", "run_fast"]

_T = TypeVar("_T")


def run_fast(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on uvloop when it is installed (uvicorn[standard] brings it):
    uvicorn picks uvloop only for loops it creates itself, not for one it joins."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def freeze_long_lived() -> None:
    """Keep everything built so far (the modules, the app, a catalog) out of the
    garbage collector.

    Long-lived objects (a catalog of 100,000 places is some 170,000 alone) are
    walked by every full collection: 50-150 ms here, a stall every queued request
    waits out. Call it once the app is built, before serving.
    """
    gc.collect()
    gc.freeze()
