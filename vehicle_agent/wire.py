"""Translate the agent's domain objects to and from the wire contract (protobuf).

The only agent module besides the uplink that imports generated ``*_pb2`` code.
"""

from __future__ import annotations

from itertools import pairwise

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent.batching import Batch
from vehicle_agent.catalog import Catalog


def hello(
    vehicle_id: str, agent_version: str, catalog: Catalog, last_acked_sequence: int
) -> pb.VehicleMessage:
    """The first message of every stream: who the vehicle is and what it can decode."""
    msg = pb.Hello(
        vehicle_id=vehicle_id,
        agent_version=agent_version,
        catalog_id=catalog.catalog_id,
        last_acked_sequence=last_acked_sequence,
    )
    for dbc in catalog.dbcs:
        msg.dbcs.add(name=dbc.name, sha256=dbc.sha256, bus=dbc.bus)
    for spec in catalog.signals:
        info = msg.catalog.add(
            index=spec.index,
            bus=spec.bus,
            message=spec.message,
            name=spec.name,
            frame_id=spec.frame_id,
            is_extended=spec.is_extended,
            unit=spec.unit,
            is_float=spec.is_float,
            pgn=spec.pgn,
        )
        if spec.minimum is not None:
            info.minimum = spec.minimum
        if spec.maximum is not None:
            info.maximum = spec.maximum
        for value, label in dict(spec.choices).items():
            info.choices[value] = label
    return pb.VehicleMessage(hello=msg)


def telemetry(batch: Batch) -> pb.VehicleMessage:
    """A numbered batch in columns; timestamps as deltas from the previous sample."""
    if batch.sequence < 1:
        raise ValueError("a batch is numbered before it is sent")
    ts = batch.timestamp_us
    base = ts[0] if ts else 0
    deltas = [0] if ts else []
    deltas.extend(b - a for a, b in pairwise(ts))
    return pb.VehicleMessage(
        batch=pb.TelemetryBatch(
            sequence=batch.sequence,
            catalog_id=batch.catalog_id,
            base_time_us=base,
            signal_index=batch.signal_index,
            time_delta_us=deltas,
            value=batch.value,
        )
    )
