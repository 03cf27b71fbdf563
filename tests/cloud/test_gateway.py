"""The gateway over a real grpc.aio server: welcome, acks, dedup, concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from sqlalchemy import create_engine, func, select

from cloud.config import CloudSettings
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from cloud.store.models import Sample
from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.cloud.conftest import MAX_BATCH_SAMPLES, VEHICLE
from tests.cloud.messages import (
    CATALOG,
    batch,
    exchange,
    hello,
    open_stream,
    reply_of,
    samples_for,
)

if TYPE_CHECKING:
    from telehub.v1.telemetry_pb2_grpc import TelemetryGatewayAsyncStub as Stub


async def test_happy_path_stores_exactly_what_was_sent(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    sent = {sequence: samples_for(sequence) for sequence in (1, 2, 3)}
    outcome = await exchange(
        stub, [hello(VEHICLE), *(batch(seq, rows) for seq, rows in sent.items())], token=token
    )
    assert outcome.code == grpc.StatusCode.OK
    welcome = outcome.replies[0].welcome
    assert (welcome.tenant, welcome.last_stored_sequence) == ("acme", 0)
    assert welcome.max_batch_samples == MAX_BATCH_SAMPLES
    assert [(ack.sequence, ack.samples_stored, ack.duplicate) for ack in outcome.acks] == [
        (1, 30, False),
        (2, 30, False),
        (3, 30, False),
    ]

    store = registry.store("acme")
    assert store.count_samples(VEHICLE) == 90
    names = {index: (bus, message, name) for index, bus, message, name, _, _ in CATALOG}
    every_sample = [row for rows in sent.values() for row in rows]
    for index, signal in names.items():
        expected = [(ts, value) for i, ts, value in every_sample if i == index]
        assert store.samples(VEHICLE, *signal) == expected
    latest = {
        (item.bus, item.message, item.signal): (item.ts_us, item.value)
        for item in store.latest(VEHICLE)
    }
    for index, signal in names.items():
        newest = max((ts, value) for i, ts, value in every_sample if i == index)
        assert latest[signal] == newest


async def test_choice_labels_travel_with_the_catalog(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    await exchange(stub, [hello(VEHICLE), batch(1, [(7, 1_000, 3.0)])], token=token)
    [gear] = registry.store("acme").latest(VEHICLE)
    assert (gear.signal, gear.value, gear.label) == ("GearPosition", 3.0, "D")


async def test_ack_comes_only_after_the_batch_is_committed(
    stub: Stub, token: str, settings: CloudSettings
) -> None:
    # A separate engine sees only committed rows.
    observer = create_engine(settings.database_url("acme"))
    call = open_stream(stub, token)
    try:
        await call.write(hello(VEHICLE))
        assert (await reply_of(call)).HasField("welcome")
        for sequence in (1, 2, 3):
            await call.write(batch(sequence, samples_for(sequence, count=200)))
            reply = await reply_of(call)
            assert reply.ack.sequence == sequence
            with observer.connect() as conn:
                visible = conn.execute(select(func.count()).select_from(Sample)).scalar_one()
            assert visible == 200 * sequence
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    finally:
        observer.dispose()


async def test_resent_batches_are_acknowledged_as_duplicates(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    first = await exchange(
        stub,
        [
            hello(VEHICLE),
            batch(1, samples_for(1)),
            batch(2, samples_for(2)),
            batch(2, samples_for(2)),
        ],
        token=token,
    )
    assert [(ack.sequence, ack.duplicate) for ack in first.acks] == [
        (1, False),
        (2, False),
        (2, True),
    ]
    assert first.acks[2].samples_stored == 0

    # A new stream, as after a reconnect: the welcome says what is stored.
    second = await exchange(
        stub, [hello(VEHICLE), batch(1, samples_for(1)), batch(3, samples_for(3))], token=token
    )
    assert second.replies[0].welcome.last_stored_sequence == 2
    assert [(ack.sequence, ack.duplicate) for ack in second.acks] == [(1, True), (3, False)]

    store = registry.store("acme")
    assert store.count_samples(VEHICLE) == 3 * 30
    assert store.batch_count(VEHICLE) == 3
    third = await exchange(stub, [hello(VEHICLE)], token=token)
    assert third.replies[0].welcome.last_stored_sequence == 3


async def test_two_streams_of_one_vehicle_store_each_sequence_once(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    messages = [hello(VEHICLE), *(batch(seq, samples_for(seq, 100)) for seq in range(1, 16))]
    outcomes = await asyncio.gather(*(exchange(stub, messages, token=token) for _ in range(3)))
    assert all(outcome.code == grpc.StatusCode.OK for outcome in outcomes)
    fresh = Counter(
        ack.sequence for outcome in outcomes for ack in outcome.acks if not ack.duplicate
    )
    assert fresh == Counter(range(1, 16))
    assert registry.store("acme").count_samples(VEHICLE) == 15 * 100


async def test_gzip_compressed_stream_is_accepted(
    gateway: GatewayServer, token: str, registry: TenantRegistry
) -> None:
    async with grpc.aio.insecure_channel(
        gateway.target, compression=grpc.Compression.Gzip
    ) as channel:
        stub = telemetry_pb2_grpc.TelemetryGatewayStub(channel)
        outcome = await exchange(stub, [hello(VEHICLE), batch(1, samples_for(1, 500))], token=token)
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.acks[0].samples_stored == 500


async def test_message_kinds_of_newer_agents_are_skipped(stub: Stub, token: str) -> None:
    # A VehicleMessage with no known arm set, as an older gateway sees a newer arm.
    unknown = telemetry_pb2.VehicleMessage()
    outcome = await exchange(stub, [hello(VEHICLE), unknown, batch(1, samples_for(1))], token=token)
    assert outcome.code == grpc.StatusCode.OK
    assert [ack.sequence for ack in outcome.acks] == [1]


async def test_stream_closed_before_hello_ends_quietly(stub: Stub, token: str) -> None:
    outcome = await exchange(stub, [], token=token)
    assert (outcome.code, outcome.replies) == (grpc.StatusCode.OK, [])


async def test_empty_batch_is_acknowledged(
    stub: Stub, token: str, registry: TenantRegistry
) -> None:
    outcome = await exchange(stub, [hello(VEHICLE), batch(1, [])], token=token)
    assert [(ack.sequence, ack.samples_stored) for ack in outcome.acks] == [(1, 0)]
    assert registry.store("acme").last_sequence(VEHICLE) == 1
