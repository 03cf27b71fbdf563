"""``telehub cloud``: run the gateway, enroll vehicles.

Settings come from ``TELEHUB_*`` environment variables (see ``cloud.config``),
e.g. ``TELEHUB_TENANTS='{"acme": {"token_secret": "..."}}'``; the flags here
override the listen address and data folder.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from cloud.app import enroll, serve
from cloud.config import CloudSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cloud", help="run the cloud gateway, enroll vehicles", description=__doc__)
    cloud_sub = p.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)

    s = cloud_sub.add_parser("serve", help="run the gRPC gateway until interrupted")
    _common(s)
    s.set_defaults(handler=_serve)

    e = cloud_sub.add_parser("enroll", help="enroll a vehicle in a tenant and print its token")
    _common(e)
    e.add_argument("--tenant", required=True)
    e.add_argument("--vehicle", required=True, help="the vehicle's id (e.g. its VIN)")
    e.set_defaults(handler=_enroll)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port to listen on (default from TELEHUB_LISTEN)")
    p.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")


def _settings(args: argparse.Namespace) -> CloudSettings:
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen"] = args.listen
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    return CloudSettings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    asyncio.run(serve(_settings(args)))
    return 0


def _enroll(args: argparse.Namespace) -> int:
    print(enroll(_settings(args), args.tenant, args.vehicle))
    return 0
