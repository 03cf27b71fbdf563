"""``telehub recommend``: run the recommendation API, and hash an API key for its settings.

Settings come from ``TELEHUB_RECOMMEND_*`` variables (see
``cloud.recommend.config``); ``--sample`` serves the bundled synthetic catalog
(tenant ``demo-motors``) instead. When the cloud's tenants are configured too
(``TELEHUB_TENANTS``), the route that builds a vehicle's context from its
stored state reads their stores, read-only.

    telehub recommend hash-key < key.txt          # the digest to put in api_keys
    telehub recommend serve --listen 127.0.0.1:8300
    telehub recommend serve --sample --api-key-file key.txt
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from pathlib import Path

from cloud.config import CloudSettings
from cloud.recommend.app import create_app
from cloud.recommend.config import RecommendSettings, hash_api_key
from cloud.recommend.sample import SAMPLE_TENANT, sample_settings
from cloud.recommend.server import RecommendServer
from cloud.recommend.vehicle_state import StoreStates, VehicleStates
from cloud.runtime import freeze_long_lived, run_fast
from cloud.store import TenantRegistry

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "recommend",
        help="the recommendation API for the driver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="recommend_command", metavar="ACTION", required=True)
    s = actions.add_parser("serve", help="serve the API until interrupted (graceful stop)")
    s.add_argument("--listen", help="host:port (default from TELEHUB_RECOMMEND_LISTEN)")
    s.add_argument(
        "--sample",
        action="store_true",
        help=f"serve the bundled synthetic catalog as tenant {SAMPLE_TENANT}",
    )
    s.add_argument(
        "--api-key-file",
        type=Path,
        help="with --sample: the client's key (default: a new one, printed)",
    )
    s.set_defaults(handler=_serve)
    k = actions.add_parser("hash-key", help="the SHA-256 digest of the key read from stdin")
    k.set_defaults(handler=_hash_key)


def _serve(args: argparse.Namespace) -> int:
    overrides = {"listen": args.listen} if args.listen else {}
    if args.sample:
        if args.api_key_file:
            key = args.api_key_file.read_text().strip()
        else:
            key = secrets.token_urlsafe(24)
            print(f"API key of {SAMPLE_TENANT}/head-unit: {key}", file=sys.stderr)
        settings = sample_settings(key, **overrides)
    else:
        settings = RecommendSettings(**overrides)
    with TenantRegistry(CloudSettings()) as registry:
        states: VehicleStates | None = None
        shared = {t: c.rules_file for t, c in settings.tenants.items() if t in registry.tenants}
        if shared:
            states = StoreStates(registry, shared)
        with contextlib.suppress(KeyboardInterrupt):
            run_fast(_run(settings, states))
    return 0


async def _run(settings: RecommendSettings, states: VehicleStates | None) -> None:
    host, _, port = settings.listen.rpartition(":")
    host = host.strip("[]")  # an IPv6 address is written [::1]:8300
    app = create_app(settings, states=states)
    freeze_long_lived()
    async with RecommendServer(app, host, int(port), grace_seconds=settings.grace_seconds) as srv:
        print(
            f"recommendations on http://{host}:{srv.port} ({len(settings.tenants)} tenant(s))",
            file=sys.stderr,
        )
        await srv.wait()


def _hash_key(_: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("telehub: error: give the key on stdin", file=sys.stderr)
        return 2
    print(hash_api_key(key))
    return 0
