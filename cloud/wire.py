"""Translation of the wire contract's messages into domain values, with validation.

This is the edge where protobuf types enter the cloud: a hello becomes a list
of ``SignalDef``, a telemetry batch becomes ``SampleColumns`` (store signal ids,
absolute timestamps, values). Anything the store could not take as it is is
refused here with ``InvalidHello``/``InvalidBatch`` saying why.

Non-finite values (NaN, ±inf) are rejected: decoded CAN signals are always
finite, so one in a batch means a broken agent, and PostgreSQL and SQLite
would disagree on how to aggregate them.

Decoding works on whole columns (``itertools.accumulate``, ``map`` over a dict
lookup, ``sum``/``min``/``max``) so the per-sample cost stays in C.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import accumulate, islice

from cloud.domain import SampleColumns, SignalDef
from cloud.errors import BatchTooLarge, InvalidBatch, InvalidHello
from telehub.v1 import telemetry_pb2

__all__ = ["catalog_from_hello", "decode_batch"]

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def catalog_from_hello(hello: telemetry_pb2.Hello) -> list[SignalDef]:
    """The hello's signal catalog; indices must be unique and names present."""
    seen: set[int] = set()
    signals: list[SignalDef] = []
    for info in hello.catalog:
        if info.index in seen:
            raise InvalidHello(f"catalog repeats signal index {info.index}")
        seen.add(info.index)
        if not info.message or not info.name:
            raise InvalidHello(f"catalog entry {info.index} lacks a message or signal name")
        signals.append(
            SignalDef(
                index=info.index,
                bus=info.bus,
                message=info.message,
                name=info.name,
                frame_id=info.frame_id,
                is_extended=info.is_extended,
                unit=info.unit,
                minimum=info.minimum if info.HasField("minimum") else None,
                maximum=info.maximum if info.HasField("maximum") else None,
                choices=dict(info.choices),
                is_float=info.is_float,
                pgn=info.pgn,
            )
        )
    return signals


def decode_batch(
    batch: telemetry_pb2.TelemetryBatch,
    *,
    catalog_id: int,
    signal_ids: Mapping[int, int],
    max_samples: int,
) -> SampleColumns:
    """Validate ``batch`` against the stream's catalog and turn it into store columns."""
    sequence = batch.sequence
    if not 1 <= sequence <= _I64_MAX:
        raise InvalidBatch(f"sequence {sequence} is outside 1..2**63-1", sequence=sequence)
    if batch.catalog_id != catalog_id:
        raise InvalidBatch(
            f"batch {sequence} uses catalog {batch.catalog_id:#018x} "
            f"but the hello announced {catalog_id:#018x}",
            sequence=sequence,
        )
    lengths = (len(batch.signal_index), len(batch.time_delta_us), len(batch.value))
    if max(lengths) > max_samples:
        raise BatchTooLarge(
            f"batch {sequence} holds {max(lengths)} samples, more than the "
            f"{max_samples} this gateway accepts",
            sequence=sequence,
        )
    if len(set(lengths)) != 1:
        raise InvalidBatch(
            f"batch {sequence} has columns of different lengths "
            f"(signal_index {lengths[0]}, time_delta_us {lengths[1]}, value {lengths[2]})",
            sequence=sequence,
        )

    try:
        ids = list(map(signal_ids.__getitem__, batch.signal_index))
    except KeyError as exc:
        raise InvalidBatch(
            f"batch {sequence} refers to signal index {exc.args[0]}, which is not in the catalog",
            sequence=sequence,
        ) from None

    # time[i] = base + delta[0] + ... + delta[i]
    times = list(islice(accumulate(batch.time_delta_us, initial=batch.base_time_us), 1, None))
    if times and (min(times) < _I64_MIN or max(times) > _I64_MAX):
        raise InvalidBatch(
            f"batch {sequence} has timestamps outside the 64-bit range", sequence=sequence
        )

    values = list(batch.value)
    if not math.isfinite(sum(values)):
        # A finite sum proves every value finite; a non-finite one may still be a
        # mere overflow of large values, so look for the culprit before refusing.
        for position, value in enumerate(values):
            if not math.isfinite(value):
                raise InvalidBatch(
                    f"batch {sequence} has a non-finite value ({value}) at position {position}",
                    sequence=sequence,
                )
    return SampleColumns(signal_ids=ids, ts_us=times, values=values)
