"""Decoding and validation of hellos and batches, without a server."""

from __future__ import annotations

import math

import pytest

from cloud.domain import DecodedBatch, Eviction, FaultState, PlanReport, TriggerMark
from cloud.errors import BatchTooLarge, InvalidBatch, InvalidHello, InvalidReport
from cloud.wire import (
    catalog_from_hello,
    decode_batch,
    decode_fault_report,
    decode_health,
    decode_plan_status,
)
from telehub.v1 import telemetry_pb2
from tests.cloud.messages import CATALOG_ID, batch, dm1, fault_report, health, hello, plan_status

SIGNAL_IDS = {0: 10, 1: 11, 2: 12, 7: 17}


def _decode(message: telemetry_pb2.VehicleMessage, *, max_samples: int = 100) -> DecodedBatch:
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


def test_evictions_and_triggers_are_decoded_with_store_signal_ids() -> None:
    decoded = decode_batch(
        batch(1, [(0, 5, 1.0)], evicted=[(7, 3, 10, 20)], triggers=[("brake", 5, 2)]).batch,
        catalog_id=CATALOG_ID,
        signal_ids=SIGNAL_IDS,
        max_samples=10,
    )
    assert decoded.evictions == [Eviction(17, 3, 10, 20)]
    assert decoded.triggers == [TriggerMark("brake", 5, 2)]
    assert len(decoded) == 1


def test_fault_report_decoding() -> None:
    report = fault_report(4, [dm1(), dm1("X1", state=telemetry_pb2.FAULT_STATE_CLEARED)])
    report.fault_codes.codes.add(
        protocol=9, code="NEW-1", state=telemetry_pb2.FAULT_STATE_SET, time_us=-5
    )
    report_id, codes = decode_fault_report(report.fault_codes)
    assert report_id == 4
    assert [(c.protocol, c.code, c.state) for c in codes] == [
        ("j1939_dm1", "SPN 520 FMI 3", FaultState.SET),
        ("j1939_dm1", "X1", FaultState.CLEARED),
        ("protocol_9", "NEW-1", FaultState.SET),
    ]
    assert (codes[0].spn, codes[0].fmi, codes[0].occurrences) == (520, 3, 1)
    with pytest.raises(InvalidReport, match=r"report id 18446744073709551615 is outside"):
        decode_fault_report(fault_report(2**64 - 1, []).fault_codes)
    with pytest.raises(InvalidReport, match="code 0: the code must be 1-64 characters"):
        decode_fault_report(fault_report(1, [dm1("x" * 65)]).fault_codes)


def test_health_counters_saturate_and_latencies_must_be_finite() -> None:
    message = health(uptime_ms=2**64 - 1, frames={"can0": 2**64 - 1}, counters={"a": 1})  # type: ignore[arg-type]
    report = decode_health(message.health)
    assert report.uptime_ms == report.frames_by_bus["can0"] == 2**63 - 1
    assert report.counters == {"a": 1}
    message.health.ack_latency_p99_ms = math.nan
    with pytest.raises(InvalidReport, match="ack_latency_p99_ms must be a finite duration"):
        decode_health(message.health)


def test_plan_status_decoding() -> None:
    status = decode_plan_status(plan_status(3, rejected_version=4, reason="bad").plan_status)
    assert status == PlanReport(3, "rejected", 4, "bad", 0)
    assert decode_plan_status(telemetry_pb2.PlanStatus()).state == "unspecified"
    with pytest.raises(InvalidReport, match="rejected_version 18446744073709551615"):
        decode_plan_status(plan_status(1, rejected_version=2**64 - 1).plan_status)


@pytest.mark.parametrize(
    ("base", "deltas"),
    [
        (1_700_000_000_000_000, [0, 5, -3, 1_000_000, -999_999]),  # the usual: numpy's sums
        (-(2**62), [2**62 - 1, 2**62, -(2**62), 1]),  # near the edge: exact Python sums
        (2**63 - 10, [-(2**63) + 10, 2**63 - 1]),  # wide swings that end in range
    ],
)
def test_times_are_exact_sums_of_the_deltas(base: int, deltas: list[int]) -> None:
    message = _raw_batch(
        base_time_us=base,
        signal_index=[7, 2, 0, 1, 7][: len(deltas)],
        time_delta_us=deltas,
        value=[0.5] * len(deltas),
    )
    samples = _decode(message).samples
    expected, t = [], base
    for delta in deltas:
        t += delta
        expected.append(t)
    assert list(samples.ts_us) == expected
    assert list(samples.signal_ids) == [SIGNAL_IDS[i] for i in [7, 2, 0, 1, 7][: len(deltas)]]


def test_an_index_between_known_ones_is_refused() -> None:
    message = batch(3, [(0, 1, 1.0), (7, 2, 1.0), (4, 3, 1.0)])  # 4: a gap in the catalog
    with pytest.raises(InvalidBatch, match="signal index 4, which is not in the catalog"):
        _decode(message)
