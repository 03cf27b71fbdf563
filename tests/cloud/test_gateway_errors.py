"""Every bad input gets the right status and reason, and the gateway keeps serving."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest

from cloud.auth import issue_token
from cloud.config import CloudSettings
from cloud.server import start_gateway
from cloud.store import TenantRegistry, TenantStore
from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.cloud.conftest import MAX_BATCH_SAMPLES, SECRET_ACME, SECRET_GLOBEX, VEHICLE
from tests.cloud.messages import (
    CATALOG_ID,
    auth,
    batch,
    exchange,
    hello,
    open_stream,
    reply_of,
    samples_for,
)

if TYPE_CHECKING:
    from telehub.v1.telemetry_pb2_grpc import TelemetryGatewayAsyncStub as Stub

Messages = list[telemetry_pb2.VehicleMessage]


def _forged() -> str:
    head, _, signature = issue_token("acme", VEHICLE, SECRET_ACME).split(".")
    _, payload, _ = issue_token("acme", "WVW-OTHER", SECRET_ACME).split(".")
    return f"{head}.{payload}.{signature}"


def _expired() -> str:
    issued = datetime.now(UTC) - timedelta(days=1)
    return issue_token("acme", VEHICLE, SECRET_ACME, ttl=timedelta(hours=1), now=issued)


def _good_token() -> str:
    return issue_token("acme", VEHICLE, SECRET_ACME)


@dataclass(frozen=True)
class Case:
    token: Callable[[], str | None]
    messages: Messages
    code: grpc.StatusCode
    reason: str
    #: The batch named by the Error message sent before the status (None: no Error expected).
    error_sequence: int | None = None


def _mismatched_lengths() -> Messages:
    message = batch(5, samples_for(5, 3))
    del message.batch.value[-1]
    return [hello(VEHICLE), message]


def _garbled_catalog() -> Messages:
    message = hello(VEHICLE)
    message.hello.catalog.add(index=0, bus="x", message="Dup", name="Dup")
    return [message]


CASES = {
    "no token": Case(
        lambda: None, [hello(VEHICLE)], grpc.StatusCode.UNAUTHENTICATED, "missing authorization"
    ),
    "bad signature": Case(
        _forged, [hello(VEHICLE)], grpc.StatusCode.UNAUTHENTICATED,
        "bad token signature for tenant 'acme'",
    ),
    "other tenant's secret": Case(
        lambda: issue_token("acme", VEHICLE, SECRET_GLOBEX), [hello(VEHICLE)],
        grpc.StatusCode.UNAUTHENTICATED, "bad token signature for tenant 'acme'",
    ),
    "unknown tenant": Case(
        lambda: issue_token("initech", VEHICLE, SECRET_ACME), [hello(VEHICLE)],
        grpc.StatusCode.UNAUTHENTICATED, "unknown tenant 'initech'",
    ),
    "expired token": Case(
        _expired, [hello(VEHICLE)], grpc.StatusCode.UNAUTHENTICATED, "token expired"
    ),
    "garbage token": Case(
        lambda: "garbage", [hello(VEHICLE)], grpc.StatusCode.UNAUTHENTICATED, "malformed token"
    ),
    "not enrolled": Case(
        lambda: issue_token("acme", "WVW-GHOST", SECRET_ACME), [hello("WVW-GHOST")],
        grpc.StatusCode.NOT_FOUND, "vehicle 'WVW-GHOST' is not enrolled in tenant 'acme'", 0,
    ),
    "hello names another vehicle": Case(
        _good_token, [hello("WVW-OTHER")], grpc.StatusCode.PERMISSION_DENIED,
        f"the token is for vehicle '{VEHICLE}' but the hello names 'WVW-OTHER'", 0,
    ),
    "batch before hello": Case(
        _good_token, [batch(5, samples_for(5))], grpc.StatusCode.FAILED_PRECONDITION,
        "the first message must be a hello, got batch", 0,
    ),
    "second hello": Case(
        _good_token, [hello(VEHICLE), hello(VEHICLE)], grpc.StatusCode.FAILED_PRECONDITION,
        "a stream carries one hello", 0,
    ),
    "catalog repeats an index": Case(
        _good_token, _garbled_catalog(), grpc.StatusCode.INVALID_ARGUMENT,
        "catalog repeats signal index 0", 0,
    ),
    "mismatched column lengths": Case(
        _good_token, _mismatched_lengths(), grpc.StatusCode.INVALID_ARGUMENT,
        "batch 5 has columns of different lengths (signal_index 3, time_delta_us 3, value 2)", 5,
    ),
    "signal index outside catalog": Case(
        _good_token, [hello(VEHICLE), batch(5, [(0, 1, 1.0), (42, 2, 1.0)])],
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch 5 refers to signal index 42, which is not in the catalog", 5,
    ),
    "wrong catalog id": Case(
        _good_token, [hello(VEHICLE), batch(5, samples_for(5), catalog_id=CATALOG_ID + 1)],
        grpc.StatusCode.INVALID_ARGUMENT, "batch 5 uses catalog", 5,
    ),
    "sequence zero": Case(
        _good_token, [hello(VEHICLE), batch(0, samples_for(5))],
        grpc.StatusCode.INVALID_ARGUMENT, "sequence 0 is outside 1..2**63-1", 0,
    ),
    "oversize batch": Case(
        _good_token, [hello(VEHICLE), batch(5, samples_for(5, MAX_BATCH_SAMPLES + 1))],
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"batch 5 holds {MAX_BATCH_SAMPLES + 1} samples, more than the {MAX_BATCH_SAMPLES}", 5,
    ),
    "message over max_message_bytes": Case(
        _good_token, [hello(VEHICLE, agent_version="x" * 100_000)],
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max",
    ),
    "NaN value": Case(
        _good_token, [hello(VEHICLE), batch(5, [(0, 1, 1.0), (1, 2, math.nan)])],
        grpc.StatusCode.INVALID_ARGUMENT, "batch 5 has a non-finite value (nan) at position 1", 5,
    ),
    "infinite value": Case(
        _good_token, [hello(VEHICLE), batch(5, [(0, 1, math.inf)])],
        grpc.StatusCode.INVALID_ARGUMENT, "batch 5 has a non-finite value (inf) at position 0", 5,
    ),
}  # fmt: skip


@pytest.fixture
async def stored(stub: Stub, registry: TenantRegistry) -> AsyncIterator[TenantStore]:
    """Batch 1 already stored; afterwards the gateway must still serve and batch 1 be intact."""
    first = await exchange(stub, [hello(VEHICLE), batch(1, samples_for(1))], token=_good_token())
    assert first.code == grpc.StatusCode.OK
    store = registry.store("acme")
    before = store.samples(VEHICLE, "powertrain", "EngineData", "EngineSpeed")
    yield store
    count = store.count_samples(VEHICLE)
    after = await exchange(
        stub, [hello(VEHICLE), batch(1000, samples_for(1000))], token=_good_token()
    )
    assert after.code == grpc.StatusCode.OK
    assert [(ack.sequence, ack.duplicate) for ack in after.acks] == [(1000, False)]
    assert store.count_samples(VEHICLE) == count + 30
    assert (
        store.samples(VEHICLE, "powertrain", "EngineData", "EngineSpeed")[: len(before)] == before
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_rejected_with_status_and_reason(stub: Stub, stored: TenantStore, case: Case) -> None:
    outcome = await exchange(stub, case.messages, token=case.token())
    assert outcome.code == case.code
    assert case.reason in outcome.details
    assert outcome.acks == []
    if case.error_sequence is None:
        assert outcome.errors == []
    else:
        [error] = outcome.errors
        assert (error.code, error.sequence) == (case.code.value[0], case.error_sequence)
        assert error.reason == outcome.details
    assert stored.count_samples(VEHICLE) == 30


async def test_bytes_that_are_not_a_message(
    channel: grpc.aio.Channel, stored: TenantStore, token: str
) -> None:
    raw = channel.stream_stream(
        "/telehub.v1.TelemetryGateway/Connect",
        request_serializer=lambda data: data,
        response_deserializer=telemetry_pb2.CloudMessage.FromString,
    )
    call = raw(None, metadata=auth(token))
    await call.write(hello(VEHICLE).SerializeToString())
    welcome = await call.read()
    assert isinstance(welcome, telemetry_pb2.CloudMessage)
    assert welcome.HasField("welcome")
    await call.write(b"\xff\xff\xff\xff")
    reply = await call.read()
    assert isinstance(reply, telemetry_pb2.CloudMessage)
    error = reply.error
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = await call.details()
    assert details.startswith("malformed message on the stream")
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], details)


async def test_good_batches_before_a_bad_one_stay_acknowledged(
    stub: Stub, stored: TenantStore, token: str
) -> None:
    outcome = await exchange(
        stub,
        [
            hello(VEHICLE),
            batch(2, samples_for(2)),
            batch(3, [(99, 1, 1.0)]),
            batch(4, samples_for(4)),
        ],
        token=token,
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [ack.sequence for ack in outcome.acks] == [2]
    assert outcome.errors[0].sequence == 3
    assert stored.last_sequence(VEHICLE) == 2
    assert stored.count_samples(VEHICLE) == 60


async def test_store_failure_is_unavailable_and_nothing_is_acknowledged(
    stub: Stub, registry: TenantRegistry, token: str
) -> None:
    call = open_stream(stub, token)
    await call.write(hello(VEHICLE))
    assert (await reply_of(call)).HasField("welcome")
    registry.store("acme").close()  # the database goes away mid-stream
    await call.write(batch(1, samples_for(1)))
    reply = await reply_of(call)
    assert reply.error.sequence == 1
    assert reply.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert await call.code() == grpc.StatusCode.UNAVAILABLE
    assert await call.details() == "the tenant store is unavailable; retry later"


class _BrokenRegistry(TenantRegistry):
    """A registry with a bug: the gateway must contain it."""

    def store(self, tenant: str) -> TenantStore:
        raise RuntimeError("bug in the registry")


async def test_unexpected_exception_is_internal_and_server_survives(
    settings: CloudSettings, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _BrokenRegistry(settings)
    async with (
        await start_gateway(settings, registry) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stub = telemetry_pb2_grpc.TelemetryGatewayStub(channel)
        for _ in range(2):
            outcome = await exchange(stub, [hello(VEHICLE)], token=token)
            assert (outcome.code, outcome.details) == (grpc.StatusCode.INTERNAL, "internal error")
    registry.close()
    assert "bug in the registry" in caplog.text
