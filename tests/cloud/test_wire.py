"""Decoding and validation of hellos and batches, without a server."""

from __future__ import annotations

import math

import pytest

from cloud.errors import BatchTooLarge, InvalidBatch, InvalidHello
from cloud.wire import catalog_from_hello, decode_batch
from telehub.v1 import telemetry_pb2
from tests.cloud.messages import CATALOG_ID, batch, hello

SIGNAL_IDS = {0: 10, 1: 11, 2: 12, 7: 17}


def _decode(message: telemetry_pb2.VehicleMessage, *, max_samples: int = 100) -> object:
    return decode_batch(
        message.batch, catalog_id=CATALOG_ID, signal_ids=SIGNAL_IDS, max_samples=max_samples
    )


def _raw_batch(**fields: object) -> telemetry_pb2.VehicleMessage:
    values: dict[str, object] = {"sequence": 1, "catalog_id": CATALOG_ID}
    values.update(fields)
    return telemetry_pb2.VehicleMessage(batch=telemetry_pb2.TelemetryBatch(**values))  # type: ignore[arg-type]


def test_catalog_from_hello() -> None:
    signals = catalog_from_hello(hello("car-1").hello)
    assert [signal.index for signal in signals] == [0, 1, 2, 7]
    gear = signals[3]
    assert (gear.bus, gear.message, gear.name) == ("body", "Gear", "GearPosition")
    assert gear.choices == {0: "P", 1: "R", 2: "N", 3: "D"}
    assert gear.minimum == 0.0
    assert gear.maximum is None  # unset optional stays unset
    assert gear.frame_id == 0x107


def test_catalog_repeating_an_index_is_refused() -> None:
    message = hello("car-1")
    message.hello.catalog.add(index=0, bus="x", message="M", name="S")
    with pytest.raises(InvalidHello, match="repeats signal index 0"):
        catalog_from_hello(message.hello)


def test_catalog_entry_without_name_is_refused() -> None:
    message = hello("car-1")
    message.hello.catalog.add(index=99, bus="x", message="M", name="")
    with pytest.raises(InvalidHello, match="entry 99 lacks"):
        catalog_from_hello(message.hello)


def test_timestamps_are_base_plus_running_sum() -> None:
    message = _raw_batch(
        base_time_us=1_000_000,
        signal_index=[0, 1, 2, 7],
        time_delta_us=[5, 10, -3, 0],
        value=[1.0, 2.0, 3.0, 4.0],
    )
    columns = decode_batch(
        message.batch, catalog_id=CATALOG_ID, signal_ids=SIGNAL_IDS, max_samples=10
    ).samples
    assert list(columns.ts_us) == [1_000_005, 1_000_015, 1_000_012, 1_000_012]
    assert list(columns.signal_ids) == [10, 11, 12, 17]
    assert list(columns.values) == [1.0, 2.0, 3.0, 4.0]


def test_empty_batch_is_valid() -> None:
    columns = decode_batch(
        _raw_batch().batch, catalog_id=CATALOG_ID, signal_ids=SIGNAL_IDS, max_samples=10
    )
    assert len(columns) == 0


def test_large_finite_values_whose_sum_overflows_are_accepted() -> None:
    message = batch(1, [(0, 1, 1e308), (0, 2, 1e308)])
    assert list(
        decode_batch(
            message.batch, catalog_id=CATALOG_ID, signal_ids=SIGNAL_IDS, max_samples=10
        ).samples.values
    ) == [1e308, 1e308]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_raw_batch(sequence=0), "sequence 0 is outside"),
        (_raw_batch(sequence=2**63), "is outside 1..2**63-1"),
        (batch(3, [(0, 1, 1.0)], catalog_id=1), "uses catalog 0x0000000000000001"),
        (
            _raw_batch(signal_index=[0, 1], time_delta_us=[0], value=[1.0, 2.0]),
            "columns of different lengths (signal_index 2, time_delta_us 1, value 2)",
        ),
        (batch(4, [(0, 1, 1.0), (5, 2, 1.0)]), "signal index 5, which is not in the catalog"),
        (batch(5, [(0, 1, 1.0), (1, 2, math.nan)]), "non-finite value (nan) at position 1"),
        (batch(6, [(0, 1, -math.inf)]), "non-finite value (-inf) at position 0"),
        (
            _raw_batch(base_time_us=2**63 - 1, signal_index=[0], time_delta_us=[1], value=[0.0]),
            "timestamps outside the 64-bit range",
        ),
    ],
)
def test_invalid_batches(message: telemetry_pb2.VehicleMessage, reason: str) -> None:
    with pytest.raises(InvalidBatch) as caught:
        _decode(message)
    assert reason in str(caught.value)
    assert caught.value.sequence == message.batch.sequence
    assert not isinstance(caught.value, BatchTooLarge)


def test_oversize_batch() -> None:
    message = batch(9, [(0, i, 0.0) for i in range(101)])
    with pytest.raises(BatchTooLarge, match="101 samples, more than the 100"):
        _decode(message, max_samples=100)
