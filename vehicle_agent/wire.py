"""Translate the agent's domain objects to and from the wire contract (protobuf).

The only agent module besides the uplink that imports generated ``*_pb2`` code.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent.batching import Batch
from vehicle_agent.catalog import Catalog
from vehicle_agent.consent import Consent, Purpose
from vehicle_agent.errors import PlanError
from vehicle_agent.faults import FaultChange
from vehicle_agent.plan import (
    Plan,
    SamplingMode,
    SignalRef,
    SignalRule,
    TriggerMode,
    TriggerRule,
)

_PURPOSES = {
    pb.PURPOSE_DIAGNOSTICS: Purpose.DIAGNOSTICS,
    pb.PURPOSE_AFTER_SALES: Purpose.AFTER_SALES,
    pb.PURPOSE_LOCATION: Purpose.LOCATION,
    pb.PURPOSE_RECOMMENDATIONS: Purpose.RECOMMENDATIONS,
    pb.PURPOSE_ANALYTICS: Purpose.ANALYTICS,
}
_MODES = {
    pb.SAMPLING_MODE_UNSPECIFIED: SamplingMode.EVERY,
    pb.SAMPLING_MODE_EVERY: SamplingMode.EVERY,
    pb.SAMPLING_MODE_ON_CHANGE: SamplingMode.ON_CHANGE,
}
_TRIGGER_MODES = {
    pb.TRIGGER_MODE_UNSPECIFIED: TriggerMode.RISING_EDGE,
    pb.TRIGGER_MODE_RISING_EDGE: TriggerMode.RISING_EDGE,
    pb.TRIGGER_MODE_ALWAYS: TriggerMode.ALWAYS,
}
_FAULT_PROTOCOLS = {"j1939_dm1": pb.FAULT_PROTOCOL_J1939_DM1, "uds": pb.FAULT_PROTOCOL_UDS}
_FAULT_STATES = {"set": pb.FAULT_STATE_SET, "cleared": pb.FAULT_STATE_CLEARED}


def hello(
    vehicle_id: str,
    agent_version: str,
    catalog: Catalog,
    last_acked_sequence: int,
    *,
    plan_version: int = 0,
    consent_version: int = 0,
) -> pb.VehicleMessage:
    """The first message of every stream: who the vehicle is and what it can decode."""
    msg = pb.Hello(
        vehicle_id=vehicle_id,
        agent_version=agent_version,
        catalog_id=catalog.catalog_id,
        last_acked_sequence=last_acked_sequence,
        plan_version=plan_version,
        consent_version=consent_version,
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
    deltas.extend(map(operator.sub, ts[1:], ts))
    return pb.VehicleMessage(
        batch=pb.TelemetryBatch(
            sequence=batch.sequence,
            catalog_id=batch.catalog_id,
            base_time_us=base,
            signal_index=batch.signal_index,
            time_delta_us=deltas,
            value=batch.value,
            evicted=[
                pb.EvictedSamples(
                    signal_index=e.signal_index,
                    samples=e.samples,
                    first_time_us=e.first_time_us,
                    last_time_us=e.last_time_us,
                )
                for e in batch.evicted
            ],
            triggers=[
                pb.TriggerFired(name=t.name, time_us=t.time_us, plan_version=t.plan_version)
                for t in batch.triggers
            ],
        )
    )


def telemetry_bytes(batch: Batch) -> bytes:
    """:func:`telemetry` serialized, byte for byte, with the columns encoded by numpy.

    Building the message field by field turns every sample into Python ints and
    floats (~1 µs per frame of the drive); here the packed columns are written
    whole: doubles as their bytes, indices and time deltas as varints computed
    on arrays. Fields go in field-number order and zero scalars are left out,
    as protobuf itself serializes, so the bytes are the same.
    """
    if batch.sequence < 1:
        raise ValueError("a batch is numbered before it is sent")
    ts = np.frombuffer(batch.timestamp_us, dtype=np.int64)
    body = bytearray()
    body += b"\x08" + _varint(batch.sequence)
    if batch.catalog_id:
        body += b"\x11" + _FIXED64.pack(batch.catalog_id)
    if len(ts):
        base = int(ts[0])
        if base:
            body += b"\x18" + _varint(base & _U64)
        body += _packed(0x22, _varints(np.frombuffer(batch.signal_index, dtype=np.uint32)))
        deltas = np.diff(ts, prepend=ts[:1])
        zigzag = (deltas << 1) ^ (deltas >> 63)
        body += _packed(0x2A, _varints(zigzag.view(np.uint64)))
        body += _packed(0x32, np.asarray(batch.value, dtype="<f8").tobytes())
    for evicted in batch.evicted:
        body += _field(
            0x3A,
            pb.EvictedSamples(
                signal_index=evicted.signal_index,
                samples=evicted.samples,
                first_time_us=evicted.first_time_us,
                last_time_us=evicted.last_time_us,
            ).SerializeToString(),
        )
    for mark in batch.triggers:
        body += _field(
            0x42,
            pb.TriggerFired(
                name=mark.name, time_us=mark.time_us, plan_version=mark.plan_version
            ).SerializeToString(),
        )
    return _field(0x12, bytes(body))


_U64 = (1 << 64) - 1
_FIXED64 = struct.Struct("<Q")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (its tag byte given): a message or packed column."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _packed(tag: int, payload: bytes) -> bytes:
    """A packed repeated field; protobuf writes nothing for an empty one."""
    return _field(tag, payload) if payload else b""


def _varints(values: npt.NDArray[np.unsignedinteger]) -> bytes:
    """The varint encoding of every value, concatenated (a packed repeated field)."""
    wide = values.astype(np.uint64, copy=False)
    if not len(wide):
        return b""
    if int(wide.max()) < 0x80:
        return wide.astype(np.uint8).tobytes()
    # Bytes per value: one, plus one per further 7 significant bits.
    sizes = np.ones(len(wide), dtype=np.int64)
    rest = wide >> np.uint64(7)
    while rest.any():
        sizes += rest != 0
        rest >>= np.uint64(7)
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    starts = ends - sizes
    for k in range(int(sizes.max())):
        has = sizes > k
        septet = (wide[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (septet | more).astype(np.uint8)
    return out.tobytes()


def fault_report(report_id: int, payload: bytes) -> pb.VehicleMessage:
    """A pending fault-code report (kept as the bytes of its codes) under its id."""
    report = pb.FaultCodeReport.FromString(payload)
    report.report_id = report_id
    return pb.VehicleMessage(fault_codes=report)


# ---------------------------------------------------------------- control messages


def _purpose(value: int, where: str) -> Purpose:
    try:
        return _PURPOSES[value]  # type: ignore[index]
    except KeyError:
        raise PlanError(f"{where}: purpose {value} is not one the agent knows") from None


def _ref(ref: pb.SignalRef, where: str) -> SignalRef:
    if not ref.name:
        raise PlanError(f"{where}: a signal reference needs a name")
    return SignalRef(name=ref.name, message=ref.message, bus=ref.bus)


def plan_from_wire(msg: pb.CollectionPlan) -> Plan:
    """The domain plan of a pushed CollectionPlan; :class:`PlanError` for unknown enums."""
    signals = []
    for n, s in enumerate(msg.signals):
        where = f"signal {n + 1} ({s.signal.name or '?'})"
        if s.mode not in _MODES:
            raise PlanError(f"{where}: sampling mode {s.mode} is not one the agent knows")
        signals.append(
            SignalRule(
                signal=_ref(s.signal, where),
                purpose=_purpose(s.purpose, where),
                mode=_MODES[s.mode],
                deadband=s.deadband,
                min_interval_ms=s.min_interval_ms,
                heartbeat_ms=s.heartbeat_ms,
                priority=s.priority,
                quantum=s.quantum,
            )
        )
    triggers = []
    for t in msg.triggers:
        where = f"trigger {t.name or '?'}"
        if t.mode not in _TRIGGER_MODES:
            raise PlanError(f"{where}: trigger mode {t.mode} is not one the agent knows")
        triggers.append(
            TriggerRule(
                name=t.name,
                condition=t.condition,
                mode=_TRIGGER_MODES[t.mode],
                min_interval_ms=t.min_interval_ms,
                pre_ms=t.pre_ms,
                post_ms=t.post_ms,
                capture=tuple(_ref(c, where) for c in t.capture),
                purpose=_purpose(t.purpose, where),
                priority=t.priority,
            )
        )
    return Plan(
        version=msg.version, name=msg.name, signals=tuple(signals), triggers=tuple(triggers)
    )


def consent_from_wire(msg: pb.ConsentUpdate) -> Consent:
    """The domain consent; purposes this agent does not know are ignored (not granted)."""
    known = _PURPOSES.keys()
    granted = frozenset(_PURPOSES[p] for p in msg.granted if p in known)
    return Consent(version=msg.version, granted=granted)


def plan_status(
    plan_version: int, consent_version: int, rejected_version: int = 0, reason: str = ""
) -> pb.PlanStatus:
    return pb.PlanStatus(
        plan_version=plan_version,
        state=pb.PLAN_STATE_REJECTED if rejected_version else pb.PLAN_STATE_ACTIVE,
        rejected_version=rejected_version,
        reason=reason,
        consent_version=consent_version,
    )


def fault_codes(changes: Iterable[FaultChange]) -> bytes:
    """The payload of one fault-code report (its id is given when it is sent)."""
    report = pb.FaultCodeReport()
    for c in changes:
        report.codes.add(
            protocol=_FAULT_PROTOCOLS.get(c.protocol, pb.FAULT_PROTOCOL_UNSPECIFIED),
            bus=c.bus,
            source=c.source,
            code=c.code,
            state=_FAULT_STATES.get(c.state, pb.FAULT_STATE_UNSPECIFIED),
            time_us=c.time_us,
            spn=c.spn,
            fmi=c.fmi,
            occurrences=c.occurrences,
            dtc=c.dtc,
            status=c.status,
        )
    return report.SerializeToString()
