"""``telehub bench``: benchmarks that print figures and ratios against a baseline run in
the same process.

One module per action, each with ``register(subparsers)`` like the top-level
subcommands: ``agent`` (the end-to-end agent against the naive decode loop),
``decode`` (``telehub decode`` against the naive loop, the cantools CLI and
asammdf), ``ingest`` (a gateway into PostgreSQL against raw COPY), ``crm`` (the
dealer's vehicle-health list at a fixed request rate, p50/p99) and ``recommend``
(the recommendation API's latency at a fixed request rate).
Benchmarks report medians of several repeats and ratios: the machines they run
on are shared and noisy, so no test asserts a timing.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tools.bench import agent, crm, decode, ingest, recommend

    p = sub.add_parser(
        "bench",
        help="benchmarks: figures and ratios against a baseline in the same run",
        description=__doc__,
    )
    actions = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    agent.register(actions)
    crm.register(actions)
    decode.register(actions)
    ingest.register(actions)
    recommend.register(actions)
