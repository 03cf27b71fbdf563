"""The numpy encoding of a telemetry batch is protobuf's own serialization, byte for byte."""

from __future__ import annotations

import random
from array import array

import pytest

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent import wire
from vehicle_agent.batching import Batch, EvictedCount, TriggerMark


def _batch(rng: random.Random, size: int, *, time_scale: int, index_scale: int) -> Batch:
    start = rng.randrange(-(2**40), 2**52)
    stamps, now = [], start
    for _ in range(size):
        # Mostly forward, sometimes backward (captured history), sometimes equal.
        now += rng.choice((0, 1, rng.randrange(-time_scale, time_scale)))
        stamps.append(now)
    return Batch(
        catalog_id=rng.randrange(2**64),
        signal_index=array("I", (rng.randrange(index_scale) for _ in range(size))),
        timestamp_us=array("q", stamps),
        value=array(
            "d",
            (rng.choice((0.0, -0.0, 1.5, -1e300, float("inf"), rng.random())) for _ in range(size)),
        ),
        sequence=rng.randrange(1, 2**63),
    )


@pytest.mark.parametrize(
    ("size", "time_scale", "index_scale"),
    [(0, 1, 1), (1, 1, 1), (5_000, 1_000, 40), (2_000, 2**45, 2**32)],
)
def test_bytes_equal_protobufs_serialization(size: int, time_scale: int, index_scale: int) -> None:
    rng = random.Random(size)
    for _ in range(5):
        batch = _batch(rng, size, time_scale=time_scale, index_scale=index_scale)
        assert wire.telemetry_bytes(batch) == wire.telemetry(batch).SerializeToString()


def test_zero_fields_and_evictions_and_triggers_encode_like_protobuf() -> None:
    batch = Batch(catalog_id=0, sequence=7)
    batch.append(3, 0, 2.5)  # base time 0: protobuf leaves the field out
    batch.append(300, -5, -1.0)
    batch.evicted.append(EvictedCount(signal_index=4, samples=10, first_time_us=-3, last_time_us=9))
    batch.evicted.append(EvictedCount(signal_index=0, samples=0, first_time_us=0, last_time_us=0))
    batch.triggers.append(TriggerMark(name="harsh brake", time_us=123, plan_version=2))
    encoded = wire.telemetry_bytes(batch)
    assert encoded == wire.telemetry(batch).SerializeToString()
    parsed = pb.VehicleMessage.FromString(encoded).batch
    assert list(parsed.signal_index) == [3, 300]
    assert list(parsed.time_delta_us) == [0, -5]
    assert parsed.evicted[0].first_time_us == -3
    assert parsed.triggers[0].name == "harsh brake"


def test_an_unnumbered_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="numbered"):
        wire.telemetry_bytes(Batch(catalog_id=1))
