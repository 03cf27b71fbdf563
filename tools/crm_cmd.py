"""``telehub crm``: serve the dealer CRM API, and issue its API keys.

Tenants and their stores come from the cloud's settings (``TELEHUB_*``, see
``cloud.config``); the CRM's own from ``TELEHUB_CRM_*`` (see ``crm.config``),
at least ``TELEHUB_CRM_TOKEN_SECRET``. A fresh deployment starts with
``telehub crm create-key --tenant T --admin``: the automaker's administrator
then creates dealers and their keys through the API.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cloud.config import CloudSettings
from cloud.runtime import freeze_long_lived, run_fast
from cloud.store import TenantRegistry
from crm.auth import Role
from crm.config import CrmSettings
from crm.keys import issue_api_key
from crm.server import serve
from crm.store import CrmStores


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crm", help="serve the dealer CRM API, issue API keys", description=__doc__)
    crm_sub = p.add_subparsers(dest="crm_command", metavar="ACTION", required=True)

    s = crm_sub.add_parser("serve", help="serve the CRM API until interrupted")
    s.add_argument("--listen", help="host:port (default from TELEHUB_CRM_LISTEN, 127.0.0.1:8080)")
    s.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")
    s.set_defaults(handler=_serve)

    k = crm_sub.add_parser("create-key", help="issue an API key and print it (shown once)")
    k.add_argument("--data-dir", type=Path, help="folder of the default SQLite tenant stores")
    k.add_argument("--tenant", required=True)
    who = k.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="the automaker's administrator")
    who.add_argument("--dealer", type=int, metavar="ID", help="a dealer's id")
    k.add_argument("--label", default="created by telehub crm create-key")
    k.set_defaults(handler=_create_key)


def _cloud(args: argparse.Namespace) -> CloudSettings:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    return CloudSettings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen"] = args.listen
    # Frozen once listening: the app, the stores and their pools are built by then.
    run_fast(serve(CrmSettings(**overrides), _cloud(args), on_started=_frozen))
    return 0


def _frozen(_server: object) -> None:
    freeze_long_lived()


def _create_key(args: argparse.Namespace) -> int:
    role = Role.ADMIN if args.admin else Role.DEALER
    with TenantRegistry(_cloud(args)) as registry:
        store = CrmStores(registry).store(args.tenant)
        key = issue_api_key(store, args.tenant, role=role, dealer_id=args.dealer, label=args.label)
    print(key.text)
    return 0
