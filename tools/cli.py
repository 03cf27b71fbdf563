"""The ``telehub`` command line: one module per subcommand, each registering itself here.

Every subcommand module has ``register(subparsers)``, which adds its parser and
sets ``handler`` to a function ``(args) -> int``. Only this module's :func:`main`
turns errors into messages and exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from cloud.errors import CloudError
from crm.errors import CrmError
from vehicle_agent import __version__
from vehicle_agent.errors import AgentError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from tools import (
        agent_cmd,
        bench,
        cloud_cmd,
        crm_cmd,
        dbc_cmd,
        decode_cmd,
        demo,
        plot_cmd,
        recommend_cmd,
        replay_cmd,
        simulate_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="telehub",
        description="Connected-car telematics hub: agent, cloud gateway, dealer CRM, fleet tools.",
    )
    parser.add_argument("--version", action="version", version=f"telehub {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.register(sub)
    cloud_cmd.register(sub)
    crm_cmd.register(sub)
    agent_cmd.register(sub)
    bench.register(sub)
    dbc_cmd.register(sub)
    decode_cmd.register(sub)
    plot_cmd.register(sub)
    recommend_cmd.register(sub)
    replay_cmd.register(sub)
    simulate_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's core logs connection chatter (e.g. GOAWAY on shutdown) at info level to
    # stderr; keep it to errors unless the user asked otherwise. Must precede grpc's
    # initialisation, which the subcommand modules trigger on import.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return _dispatch(args)


#: A subcommand module's ``register``: adds its parser to the subparsers given.
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def subcommand_main(name: str, register: Register, argv: Sequence[str] | None = None) -> int:
    """Run one subcommand on its own (a module's ``main``): *argv* without its name.

    Usage errors return 2 and ``--help`` 0 instead of exiting, so tests can call it.
    """
    parser = argparse.ArgumentParser(prog="telehub")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        code: int = args.handler(args)
    except (AgentError, CloudError, CrmError, ValidationError) as exc:
        print(f"telehub: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
