"""Plans, consent, fault codes, health and plan status over a real grpc.aio stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest

from cloud.auth import issue_token
from cloud.config import CloudSettings, TenantSettings
from cloud.domain import Purpose
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry, TenantStore
from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.cloud.conftest import SECRET_ACME, SECRET_GLOBEX, VEHICLE, make_settings
from tests.cloud.messages import (
    Call,
    batch,
    dm1,
    exchange,
    fault_report,
    health,
    hello,
    next_of_kind,
    open_stream,
    plan_status,
    pushed_within,
    read_reply,
    reply_of,
    samples_for,
)

if TYPE_CHECKING:
    from telehub.v1.telemetry_pb2_grpc import TelemetryGatewayAsyncStub as Stub

PLAN = {
    "name": "highway",
    "signals": [
        {"signal": "EngineData.EngineSpeed", "purpose": "diagnostics", "mode": "on_change",
         "deadband": 25, "heartbeat_ms": 10_000},
        {"signal": "chassis.VehicleSpeed.Speed", "purpose": "analytics", "priority": 7},
    ],
    "triggers": [
        {"name": "fast", "condition": "Speed > 120", "capture": ["Gear.GearPosition"],
         "pre_ms": 1_000, "post_ms": 2_000, "purpose": "diagnostics"},
    ],
}  # fmt: skip
#: Far longer than any wait below: a push that arrives in time came through the hub.
SLOW_POLL = 30.0


@pytest.fixture
def settings(tmp_path: Path) -> CloudSettings:
    return make_settings(tmp_path / "data", control_poll_seconds=SLOW_POLL)


async def _welcomed(
    stub: Stub, token: str, *, plan_version: int = 0, consent_version: int = 0
) -> Call:
    call = open_stream(stub, token)
    await call.write(hello(VEHICLE, plan_version=plan_version, consent_version=consent_version))
    assert (await reply_of(call)).HasField("welcome")
    return call


async def _close(call: Call) -> grpc.StatusCode:
    await call.done_writing()
    while await read_reply(call) is not None:
        pass
    return await call.code()


async def test_plan_and_consent_are_pushed_after_the_welcome(
    gateway: GatewayServer, stub: Stub, token: str
) -> None:
    assert gateway.control.set_plan("acme", VEHICLE, PLAN) == 1
    assert gateway.control.set_consent("acme", VEHICLE, [Purpose.DIAGNOSTICS]) == 1
    call = await _welcomed(stub, token)
    plan, before = await next_of_kind(call, "plan")
    consent, _ = await next_of_kind(call, "consent")
    assert before == []
    assert (plan.plan.version, plan.plan.name) == (1, "highway")
    first = plan.plan.signals[0]
    assert (first.signal.bus, first.signal.message, first.signal.name) == (
        "",
        "EngineData",
        "EngineSpeed",
    )
    assert (first.mode, first.deadband, first.heartbeat_ms) == (
        telemetry_pb2.SAMPLING_MODE_ON_CHANGE,
        25.0,
        10_000,
    )
    assert plan.plan.signals[1].purpose == telemetry_pb2.PURPOSE_ANALYTICS
    [trigger] = plan.plan.triggers
    assert (trigger.name, trigger.condition, trigger.pre_ms, trigger.post_ms) == (
        "fast",
        "Speed > 120",
        1_000,
        2_000,
    )
    assert trigger.mode == telemetry_pb2.TRIGGER_MODE_RISING_EDGE
    assert (consent.consent.version, list(consent.consent.granted)) == (
        1,
        [telemetry_pb2.PURPOSE_DIAGNOSTICS],
    )
    assert await _close(call) == grpc.StatusCode.OK


async def test_nothing_is_pushed_when_the_car_runs_the_current_versions(
    gateway: GatewayServer, stub: Stub, token: str
) -> None:
    gateway.control.set_plan("acme", VEHICLE, PLAN)
    gateway.control.set_consent("acme", VEHICLE, list(Purpose))
    call = await _welcomed(stub, token, plan_version=1, consent_version=1)
    await call.write(batch(1, samples_for(1)))
    assert (await reply_of(call)).ack.sequence == 1
    assert await pushed_within(call, 0.3, probe=2) == []
    assert await _close(call) == grpc.StatusCode.OK


async def test_a_vehicle_without_plan_or_consent_gets_neither(
    gateway: GatewayServer, stub: Stub, token: str
) -> None:
    # No plan ever set: nothing, whatever the car runs. Default consent: version 0 on both sides.
    call = await _welcomed(stub, token, plan_version=3)
    assert await pushed_within(call, 0.3, probe=1) == []
    assert await _close(call) == grpc.StatusCode.OK


async def test_an_older_or_newer_plan_on_the_car_is_replaced(
    gateway: GatewayServer, stub: Stub, token: str
) -> None:
    gateway.control.set_plan("acme", VEHICLE, PLAN)
    call = await _welcomed(stub, token, plan_version=9)  # e.g. a restored cloud database
    plan, _ = await next_of_kind(call, "plan")
    assert plan.plan.version == 1
    assert await _close(call) == grpc.StatusCode.OK


async def test_a_new_plan_reaches_the_live_session_through_the_hub(
    gateway: GatewayServer, stub: Stub, token: str
) -> None:
    call = await _welcomed(stub, token)
    started = time.monotonic()
    version = await asyncio.to_thread(gateway.control.set_plan, "acme", VEHICLE, PLAN)
    plan, _ = await next_of_kind(call, "plan", within=2.0)
    assert plan.plan.version == version == 1
    consent_version = await asyncio.to_thread(
        gateway.control.set_consent, "acme", VEHICLE, [Purpose.LOCATION]
    )
    consent, _ = await next_of_kind(call, "consent", within=2.0)
    assert consent.consent.version == consent_version == 1
    assert list(consent.consent.granted) == [telemetry_pb2.PURPOSE_LOCATION]
    assert time.monotonic() - started < 2.0 < SLOW_POLL
    # Latest wins: two quick changes, the session sends what is current.
    await asyncio.to_thread(gateway.control.set_plan, "acme", VEHICLE, {**PLAN, "name": "a"})
    await asyncio.to_thread(gateway.control.set_plan, "acme", VEHICLE, {**PLAN, "name": "b"})
    plan, _ = await next_of_kind(call, "plan", within=2.0)
    if plan.plan.version == 2:
        plan, _ = await next_of_kind(call, "plan", within=2.0)
    assert (plan.plan.version, plan.plan.name) == (3, "b")
    assert await _close(call) == grpc.StatusCode.OK


@contextlib.asynccontextmanager
async def _own_gateway(settings: CloudSettings) -> AsyncIterator[Stub]:
    """A gateway with its own settings, its vehicle enrolled, and a stub to reach it."""
    with TenantRegistry(settings) as registry:
        registry.store("acme").enroll_vehicle(VEHICLE)
        server = await start_gateway(settings, registry)
        try:
            async with grpc.aio.insecure_channel(server.target) as channel:
                yield telemetry_pb2_grpc.TelemetryGatewayStub(channel)
        finally:
            await server.stop(0)


async def test_a_change_by_another_process_arrives_by_polling(tmp_path: Path, token: str) -> None:
    settings = make_settings(tmp_path / "data", control_poll_seconds=0.1)
    async with _own_gateway(settings) as stub:
        call = await _welcomed(stub, token)
        # Another process: its own store on the same database, no hub.
        other = TenantStore.open(settings.database_url("acme"))
        try:
            await asyncio.to_thread(other.add_plan, VEHICLE, "cli", {"name": "cli"})
            plan, _ = await next_of_kind(call, "plan", within=3.0)
            await asyncio.to_thread(other.add_consent, VEHICLE, set())
            consent, _ = await next_of_kind(call, "consent", within=3.0)
        finally:
            other.close()
        assert (plan.plan.version, plan.plan.name) == (1, "cli")
        assert (consent.consent.version, list(consent.consent.granted)) == (1, [])
        assert await _close(call) == grpc.StatusCode.OK


async def test_a_tenant_default_other_than_the_cars_is_sent_as_version_0(
    tmp_path: Path, token: str
) -> None:
    settings = make_settings(
        tmp_path / "data",
        tenants={
            "acme": TenantSettings(
                token_secret=SECRET_ACME, default_consent=frozenset({Purpose.DIAGNOSTICS})
            )
        },
    )
    async with _own_gateway(settings) as stub:
        call = await _welcomed(stub, token)
        consent, _ = await next_of_kind(call, "consent")
        assert (consent.consent.version, list(consent.consent.granted)) == (
            0,
            [telemetry_pb2.PURPOSE_DIAGNOSTICS],
        )
        assert await pushed_within(call, 0.2, probe=1) == []
        assert await _close(call) == grpc.StatusCode.OK


async def test_fault_reports_are_stored_once_and_acknowledged_every_time(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    codes = [dm1("SPN 520 FMI 3"), dm1("SPN 100 FMI 1", spn=100, fmi=1, source=3)]
    cleared = dm1(
        "SPN 520 FMI 3", state=telemetry_pb2.FAULT_STATE_CLEARED, ts_us=1_700_000_009_000_000
    )
    outcome = await exchange(
        stub,
        [
            hello(VEHICLE),
            fault_report(1, codes),
            fault_report(1, codes),
            fault_report(2, [cleared]),
        ],
        token=token,
    )
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.report_acks == [1, 1, 2]
    # The same report on a new stream, as after a reconnect: acknowledged, not stored again.
    again = await exchange(stub, [hello(VEHICLE), fault_report(1, codes)], token=token)
    assert again.report_acks == [1]
    store = registry.store("acme")
    assert len(store.fault_history(VEHICLE)) == 3
    assert [entry.fault.code for entry in store.active_faults(VEHICLE)] == ["SPN 100 FMI 1"]


async def test_health_and_plan_status_are_stored(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    outcome = await exchange(
        stub,
        [
            hello(VEHICLE),
            health(decode_errors=4, reconnects=2, plan_version=1),
            plan_status(1, rejected_version=2, reason="unknown signal Foo"),
            batch(1, samples_for(1)),  # its ack proves the messages before it were handled
        ],
        token=token,
    )
    assert [ack.sequence for ack in outcome.acks] == [1]
    store = registry.store("acme")
    report = store.latest_health(VEHICLE)
    assert report is not None
    assert (report.decode_errors, report.reconnects, report.plan_version) == (4, 2, 1)
    assert report.frames_by_bus == {"powertrain": 1000}
    status = store.plan_report(VEHICLE)
    assert status is not None
    assert (status.running_version, status.state, status.rejected_version, status.reason) == (
        1,
        "rejected",
        2,
        "unknown signal Foo",
    )


async def test_evictions_and_triggers_ride_with_their_batch_once(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    message = batch(
        1, samples_for(1), evicted=[(0, 40, 100, 900)], triggers=[("fast", 1_700_000_001_000, 1)]
    )
    outcome = await exchange(stub, [hello(VEHICLE), message, message], token=token)
    assert [(ack.sequence, ack.duplicate) for ack in outcome.acks] == [(1, False), (1, True)]
    store = registry.store("acme")
    [eviction] = store.evictions(VEHICLE)
    assert (eviction.sequence, eviction.signal, eviction.samples) == (1, "EngineSpeed", 40)
    assert (eviction.first_ts_us, eviction.last_ts_us) == (100, 900)
    [trigger] = store.trigger_firings(VEHICLE)
    assert (trigger.sequence, trigger.name, trigger.ts_us, trigger.plan_version) == (
        1,
        "fast",
        1_700_000_001_000,
        1,
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (fault_report(0, [dm1()]), "report id 0 is outside"),
        (fault_report(1, [dm1("")]), "the code must be 1-64 characters"),
        (fault_report(1, [dm1(state=0)]), "the state must be set or cleared"),
        (health(ack_latency_p50_ms=-1), "ack_latency_p50_ms must be a finite duration"),
        (batch(1, [], evicted=[(99, 1, 0, 0)]), "signal index 99, which is not in the catalog"),
        (batch(1, [], evicted=[(0, 1, 5, 4)]), "first time is after its last"),
        (batch(1, [], triggers=[("", 0, 1)]), "a trigger without a name"),
    ],
)
async def test_invalid_reports_end_the_stream_with_the_reason(
    stub: Stub, token: str, message: telemetry_pb2.VehicleMessage, reason: str
) -> None:
    call = await _welcomed(stub, token)
    await call.write(message)
    error, _ = await next_of_kind(call, "error")
    assert reason in error.error.reason
    assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tenants_are_isolated(
    gateway: GatewayServer, stub: Stub, registry: TenantRegistry
) -> None:
    registry.store("globex").enroll_vehicle(VEHICLE)  # the same id in another automaker
    gateway.control.set_plan("acme", VEHICLE, PLAN)
    outcome = await exchange(
        stub,
        [hello(VEHICLE), fault_report(1, [dm1()])],
        token=issue_token("globex", VEHICLE, SECRET_GLOBEX),
    )
    assert not any(reply.HasField("plan") for reply in outcome.replies)
    assert outcome.report_acks == [1]
    assert registry.store("globex").newest_plan(VEHICLE) is None
    assert registry.store("acme").fault_history(VEHICLE) == []
    assert len(registry.store("globex").fault_history(VEHICLE)) == 1


async def test_a_cancelled_stream_leaves_no_session_running(stub: Stub, token: str) -> None:
    call = await _welcomed(stub, token)
    sessions = _sessions()
    assert len(sessions) == 1
    call.cancel()
    await asyncio.wait(sessions, timeout=5)
    assert _sessions() == []


def _sessions() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("session ")]
