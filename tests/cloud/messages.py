"""Hand-built wire messages and a stream runner for the gateway tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio

from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc

CATALOG_ID = 0xDEADBEEF_CAFEF00D  # above 2**63: exercises the signed storage

#: (index, bus, message, signal, unit, choices)
CATALOG: tuple[tuple[int, str, str, str, str, dict[int, str]], ...] = (
    (0, "powertrain", "EngineData", "EngineSpeed", "rpm", {}),
    (1, "powertrain", "EngineData", "CoolantTemp", "degC", {}),
    (2, "chassis", "VehicleSpeed", "Speed", "km/h", {}),
    (7, "body", "Gear", "GearPosition", "", {0: "P", 1: "R", 2: "N", 3: "D"}),
)

#: (catalog index, ts_us, value)
Sample = tuple[int, int, float]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def hello(
    vehicle_id: str,
    *,
    catalog_id: int = CATALOG_ID,
    agent_version: str = "test/1.0",
    plan_version: int = 0,
    consent_version: int = 0,
) -> telemetry_pb2.VehicleMessage:
    return telemetry_pb2.VehicleMessage(
        hello=telemetry_pb2.Hello(
            vehicle_id=vehicle_id,
            agent_version=agent_version,
            catalog_id=catalog_id,
            plan_version=plan_version,
            consent_version=consent_version,
            catalog=[
                telemetry_pb2.SignalInfo(
                    index=index,
                    bus=bus,
                    message=message,
                    name=name,
                    unit=unit,
                    choices=choices,
                    frame_id=0x100 + index,
                    minimum=0.0,
                )
                for index, bus, message, name, unit, choices in CATALOG
            ],
        )
    )


def batch(
    sequence: int,
    samples: Sequence[Sample],
    *,
    catalog_id: int = CATALOG_ID,
    evicted: Sequence[tuple[int, int, int, int]] = (),
    triggers: Sequence[tuple[str, int, int]] = (),
) -> telemetry_pb2.VehicleMessage:
    """A batch whose deltas reproduce exactly the given absolute timestamps.

    ``evicted``: (signal index, samples, first ts, last ts); ``triggers``: (name, ts, plan version).
    """
    base = samples[0][1] if samples else 0
    deltas, previous = [], base
    for _, ts, _ in samples:
        deltas.append(ts - previous)
        previous = ts
    return telemetry_pb2.VehicleMessage(
        batch=telemetry_pb2.TelemetryBatch(
            sequence=sequence,
            catalog_id=catalog_id,
            base_time_us=base,
            signal_index=[index for index, _, _ in samples],
            time_delta_us=deltas,
            value=[value for _, _, value in samples],
            evicted=[
                telemetry_pb2.EvictedSamples(
                    signal_index=index, samples=count, first_time_us=first, last_time_us=last
                )
                for index, count, first, last in evicted
            ],
            triggers=[
                telemetry_pb2.TriggerFired(name=name, time_us=ts, plan_version=version)
                for name, ts, version in triggers
            ],
        )
    )


def dm1(
    code: str = "SPN 520 FMI 3",
    *,
    state: int = telemetry_pb2.FAULT_STATE_SET,
    ts_us: int = 1_700_000_000_000_000,
    source: int = 0x00,
    spn: int = 520,
    fmi: int = 3,
) -> telemetry_pb2.FaultCode:
    """A J1939 DM1 fault code on the powertrain bus."""
    return telemetry_pb2.FaultCode(
        protocol=telemetry_pb2.FAULT_PROTOCOL_J1939_DM1,
        bus="powertrain",
        source=source,
        code=code,
        state=state,  # type: ignore[arg-type]
        time_us=ts_us,
        spn=spn,
        fmi=fmi,
        occurrences=1,
    )


def fault_report(
    report_id: int, codes: Sequence[telemetry_pb2.FaultCode]
) -> telemetry_pb2.VehicleMessage:
    return telemetry_pb2.VehicleMessage(
        fault_codes=telemetry_pb2.FaultCodeReport(report_id=report_id, codes=codes)
    )


def health(
    *, time_us: int = 1_700_000_000_000_000, frames: Mapping[str, int] | None = None, **fields: int
) -> telemetry_pb2.VehicleMessage:
    return telemetry_pb2.VehicleMessage(
        health=telemetry_pb2.AgentHealth(
            time_us=time_us,
            frames_by_bus=frames if frames is not None else {"powertrain": 1000},
            **fields,  # type: ignore[arg-type]
        )
    )


def plan_status(
    plan_version: int, *, rejected_version: int = 0, reason: str = "", consent_version: int = 0
) -> telemetry_pb2.VehicleMessage:
    state = (
        telemetry_pb2.PLAN_STATE_REJECTED if rejected_version else telemetry_pb2.PLAN_STATE_ACTIVE
    )
    return telemetry_pb2.VehicleMessage(
        plan_status=telemetry_pb2.PlanStatus(
            plan_version=plan_version,
            state=state,
            rejected_version=rejected_version,
            reason=reason,
            consent_version=consent_version,
        )
    )


def samples_for(sequence: int, count: int = 30) -> list[Sample]:
    """Deterministic samples: every catalog signal, timestamps rising across batches."""
    start = 1_700_000_000_000_000 + sequence * 1_000_000
    indices = [entry[0] for entry in CATALOG]
    return [
        (indices[i % len(indices)], start + i * 1_000, float(sequence * 1000 + i))
        for i in range(count)
    ]


@dataclass
class Outcome:
    replies: list[telemetry_pb2.CloudMessage] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""

    @property
    def acks(self) -> list[telemetry_pb2.Ack]:
        return [reply.ack for reply in self.replies if reply.HasField("ack")]

    @property
    def report_acks(self) -> list[int]:
        return [
            reply.report_ack.report_id for reply in self.replies if reply.HasField("report_ack")
        ]

    @property
    def errors(self) -> list[telemetry_pb2.Error]:
        return [reply.error for reply in self.replies if reply.HasField("error")]


Call = grpc.aio.StreamStreamCall[telemetry_pb2.VehicleMessage, telemetry_pb2.CloudMessage]


def open_stream(stub: telemetry_pb2_grpc.TelemetryGatewayAsyncStub, token: str | None) -> Call:
    """A stream in reader/writer style (``write``/``read``)."""
    return stub.Connect(None, metadata=auth(token) if token else None)


async def read_reply(call: Call) -> telemetry_pb2.CloudMessage | None:
    """The next reply, or None at the end of the stream."""
    reply = await call.read()
    return reply if isinstance(reply, telemetry_pb2.CloudMessage) else None


async def reply_of(call: Call) -> telemetry_pb2.CloudMessage:
    """The next reply, which must exist."""
    reply = await read_reply(call)
    assert reply is not None, "the stream ended early"
    return reply


async def next_of_kind(
    call: Call, kind: str, *, within: float = 5.0
) -> tuple[telemetry_pb2.CloudMessage, list[telemetry_pb2.CloudMessage]]:
    """Read until a reply of ``kind`` (e.g. "plan"); returns it and the replies read before it."""
    skipped: list[telemetry_pb2.CloudMessage] = []
    async with asyncio.timeout(within):
        while True:
            reply = await reply_of(call)
            if reply.WhichOneof("body") == kind:
                return reply, skipped
            skipped.append(reply)


async def pushed_within(call: Call, seconds: float, *, probe: int) -> list[str]:
    """Kinds of the replies the gateway sent on its own within ``seconds``.

    Waits, then sends an empty batch ``probe`` and reads up to its ack. (Cancelling
    a pending ``read`` would cancel the whole call, so silence is proven this way.)
    """
    await asyncio.sleep(seconds)
    await call.write(batch(probe, []))
    ack, before = await next_of_kind(call, "ack")
    assert ack.ack.sequence == probe
    return [str(reply.WhichOneof("body")) for reply in before]


async def exchange(
    stub: telemetry_pb2_grpc.TelemetryGatewayAsyncStub,
    messages: Iterable[telemetry_pb2.VehicleMessage],
    *,
    token: str | None,
) -> Outcome:
    """Run a stream in lock-step, as a simple agent does, and collect replies and status.

    Each hello, batch or fault-code report waits for its reply, and nothing is written once the
    gateway has answered with an error. (Writing into a call the server already
    ended makes the grpc.aio client replace the server's status with a local
    INTERNAL "Internal error from Core", which would hide what is tested here.)
    """
    outcome = Outcome()
    call = open_stream(stub, token)
    try:
        for message in messages:
            await call.write(message)
            if message.WhichOneof("body") not in ("hello", "batch", "fault_codes"):
                continue
            reply = await read_reply(call)
            if reply is None:
                break
            outcome.replies.append(reply)
            if reply.HasField("error"):
                break
        await call.done_writing()
        while (reply := await read_reply(call)) is not None:
            outcome.replies.append(reply)
    except grpc.aio.AioRpcError:
        pass  # the status is read below
    outcome.code = await call.code()
    outcome.details = await call.details() or ""
    return outcome
