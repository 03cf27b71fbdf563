"""``telehub agent run``: the vehicle agent on a bus or a log file.

Settings come from ``TELEHUB_*`` environment variables (see
``vehicle_agent.config``); flags given here override them. A DBC is given as
``PATH[:BUS[:CHANNEL]]``: decode the frames of CHANNEL (all channels when left
out) with PATH, naming the bus BUS. A bus is given as
``NAME=INTERFACE:CHANNEL[:BITRATE]``; its frames carry NAME as their channel,
so ``--dbc powertrain.dbc:powertrain:powertrain`` decodes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent.app import HEALTH_STATE, Agent
from vehicle_agent.config import AgentSettings, BusSettings, DbcSettings
from vehicle_agent.control import CONSENT_STATE, PLAN_STATE
from vehicle_agent.outbox import inspect


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="run the vehicle agent", description=__doc__)
    agent_sub = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    r = agent_sub.add_parser("run", help="stream a bus or a log file to the gateway")
    r.add_argument("--vehicle", help="vehicle id (TELEHUB_VEHICLE_ID)")
    r.add_argument("--token", help="vehicle credential (TELEHUB_TOKEN)")
    r.add_argument("--gateway", help="gateway host:port (TELEHUB_GATEWAY)")
    r.add_argument(
        "--dbc", action="append", type=dbc_argument, help="PATH[:BUS[:CHANNEL]], repeatable"
    )
    src = r.add_mutually_exclusive_group()
    src.add_argument("--log", type=Path, help="replay this log file (any format python-can reads)")
    src.add_argument("--interface", help="python-can interface, e.g. socketcan, virtual, pcan")
    r.add_argument("--channel", help="python-can channel, e.g. can0")
    r.add_argument("--bitrate", type=int)
    src.add_argument(
        "--bus", action="append", type=_bus, help="NAME=INTERFACE:CHANNEL[:BITRATE], repeatable"
    )
    r.add_argument("--fd", action="store_true", help="open the buses as CAN FD")
    r.add_argument("--outbox", type=Path, help="the durable outbox file (TELEHUB_OUTBOX)")
    r.add_argument("--no-outbox", action="store_true", help="keep pending batches in memory only")
    r.add_argument("--realtime", action="store_true", help="replay at the log's own pace")
    r.add_argument("--speed", type=float, help="with --realtime: replay N times faster")
    r.add_argument("--json", action="store_true", help="print the final report as JSON")
    r.set_defaults(handler=_run)
    st = agent_sub.add_parser(
        "status", help="what the agent's outbox holds and its latest counters (read-only)"
    )
    st.add_argument(
        "--outbox",
        type=Path,
        default=AgentSettings.model_fields["outbox"].default,
        help="the outbox file (default: %(default)s)",
    )
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(handler=_status)


def _bus(text: str) -> BusSettings:
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=INTERFACE:CHANNEL[:BITRATE]")
    bitrate = int(parts[2]) if len(parts) == 3 else None
    return BusSettings(name=name, interface=parts[0], channel=parts[1], bitrate=bitrate)


def dbc_argument(text: str) -> DbcSettings:
    path, _, rest = text.partition(":")
    bus, _, channel = rest.partition(":")
    return DbcSettings(path=Path(path), bus=bus or "can", channel=channel or None)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "vehicle_id": args.vehicle,
            "token": args.token,
            "gateway": args.gateway,
            "dbc": args.dbc,
            "log_file": args.log,
            "interface": args.interface,
            "channel": args.channel,
            "bitrate": args.bitrate,
            "speed": args.speed,
            "outbox": args.outbox,
        }.items()
        if value is not None
    }
    if args.bus:
        overrides["buses"] = [b.model_copy(update={"fd": args.fd}) for b in args.bus]
    if args.fd:
        overrides["fd"] = True
    if args.no_outbox:
        overrides["outbox"] = None
    if args.realtime:
        overrides["realtime"] = True
    settings = AgentSettings(**overrides)
    agent = Agent.from_settings(settings)
    report = asyncio.run(agent.run())
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.frames_read:,} frames read, {report.frames_decoded:,} decoded, "
            f"{report.samples_sent:,} samples sent, {report.samples_acked:,} acknowledged, "
            f"{report.evicted_samples:,} evicted; plan {report.plan_version}, "
            f"consent {report.consent_version}"
        )
    return 0


def status(path: Path) -> dict[str, Any]:
    """The outbox's contents and the agent's last saved counters, as plain data."""
    summary = inspect(path)
    plan = consent = health = None
    if (raw := summary.state.get(PLAN_STATE)) is not None:
        p = pb.CollectionPlan.FromString(raw)
        plan = {
            "version": p.version,
            "name": p.name,
            "signals": len(p.signals),
            "triggers": len(p.triggers),
        }
    if (raw := summary.state.get(CONSENT_STATE)) is not None:
        c = pb.ConsentUpdate.FromString(raw)
        consent = {
            "version": c.version,
            "granted": sorted(
                pb.Purpose.Name(g).removeprefix("PURPOSE_").lower() for g in c.granted
            ),
        }
    if (raw := summary.state.get(HEALTH_STATE)) is not None:
        health = MessageToDict(pb.AgentHealth.FromString(raw), preserving_proto_field_name=True)
    return {
        "outbox": str(summary.path),
        "pending_batches": summary.batches,
        "pending_samples": summary.samples,
        "pending_bytes": summary.size_bytes,
        "sequences": [summary.first_sequence, summary.last_sequence],
        "oldest_pending_age_s": (
            None
            if summary.oldest_created_us is None
            else round(time.time() - summary.oldest_created_us / 1e6, 1)
        ),
        "pending_reports": summary.reports,
        "next_sequence": summary.next_sequence,
        "never_connected": summary.provisional,
        "resume_position": summary.resume_position,
        "evicted_not_yet_reported": summary.pending_evicted_samples,
        "plan": plan or {"version": 0, "name": "default (every signal, every sample)"},
        "consent": consent or {"version": 0, "granted": "default (every purpose but location)"},
        "last_counters": health,
    }


def _status(args: argparse.Namespace) -> int:
    data = status(args.outbox)
    if args.json:
        print(json.dumps(data))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key == "last_counters":
            continue
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    health = data["last_counters"]
    if health:
        print("last counters:")
        for key, value in health.items():
            print(f"  {key}: {value}")
    return 0
