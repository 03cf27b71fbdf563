"""Tables of one tenant's database (every tenant has its own database).

The Alembic migrations in ``cloud.store.migrations`` build and upgrade them
(``cloud.store.schema``); a test proves the newest revision builds exactly
these tables on SQLite and PostgreSQL, so a change here needs a revision.

Unsigned 64-bit values (the agent's ``catalog_id``) do not fit a signed
BIGINT, so they are stored two's-complement: ``to_signed64`` on the way in,
``to_unsigned64`` on the way out. Sequences stay below 2**63 (the gateway
rejects larger ones), so they are stored as they are.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cloud.store.dialect import BIG_ID

__all__ = [
    "AgentHealthRow",
    "Base",
    "Batch",
    "ConsentRow",
    "DailyIdleRow",
    "EventRow",
    "EvictionRow",
    "FaultCodeRow",
    "HealthRow",
    "LatestState",
    "PlanRow",
    "PlanStatusRow",
    "RuleBatchRow",
    "RuleStateRow",
    "Sample",
    "ServiceRecordRow",
    "Signal",
    "TriggerRow",
    "TripRow",
    "Vehicle",
    "VehicleSignal",
    "to_signed64",
    "to_unsigned64",
]

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_signed64(value: int) -> int:
    """Map an unsigned 64-bit integer onto the signed range (same bits)."""
    if not 0 <= value < _U64:
        raise ValueError(f"{value} is not an unsigned 64-bit integer")
    return value - _U64 if value > _I64_MAX else value


def to_unsigned64(value: int) -> int:
    """Inverse of ``to_signed64``."""
    return value + _U64 if value < 0 else value


class Base(DeclarativeBase):
    """Declarative base of the tenant store's tables."""

    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        int: Integer,
        float: Float(53),
        datetime: DateTime(timezone=True),
        str: String,
    }


class Vehicle(Base):
    """A vehicle enrolled in the tenant; the rest refers to it by ``id``."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(unique=True)
    enrolled_at: Mapped[datetime]
    agent_version: Mapped[str | None]
    #: The agent's unsigned 64-bit catalog digest, stored signed (see module docstring).
    catalog_id: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime | None]
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)


class Signal(Base):
    """A signal definition, shared by every vehicle of the tenant that decodes it."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("bus", "message", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bus: Mapped[str]
    message: Mapped[str]
    name: Mapped[str]
    # A 29-bit J1939 id does not fit a signed 32-bit INTEGER's guarantees everywhere.
    frame_id: Mapped[int] = mapped_column(BigInteger)
    is_extended: Mapped[bool] = mapped_column(Boolean)
    unit: Mapped[str]
    minimum: Mapped[float | None]
    maximum: Mapped[float | None]
    #: Value descriptions; JSON object keys are strings, so the raw value as text.
    choices: Mapped[dict[str, str]] = mapped_column(JSON)
    is_float: Mapped[bool] = mapped_column(Boolean)
    pgn: Mapped[int]


class Sample(Base):
    """One value of one signal at one CAN timestamp (narrow rows, appended only).

    Built for bulk loading: no surrogate key and no foreign keys (each costs
    more per row than writing the row itself: a sequence and a second index,
    a lookup in ``vehicles`` and ``signals``). The references still hold: a
    batch is stored with the ``latest_state`` row of each of its signals in
    the same transaction, whose foreign keys check them once per signal
    instead of once per sample. The one index serves the queries asked of
    samples: one signal of one vehicle over time.
    On PostgreSQL the table is partitioned by UTC day of ``ts_us`` (see
    ``cloud.store.dialect``).
    """

    __tablename__ = "samples"
    __table_args__ = (
        Index("ix_samples_vehicle_signal_ts", "vehicle_id", "signal_id", "ts_us"),
        {"postgresql_partition_by": "RANGE (ts_us)"},
    )
    # The ORM wants an identity for a mapped class; the table itself has no key.
    __mapper_args__ = {"primary_key": ["vehicle_id", "signal_id", "ts_us"]}  # noqa: RUF012

    vehicle_id: Mapped[int]
    signal_id: Mapped[int]
    #: Microseconds since the Unix epoch, from the CAN frame's own timestamp.
    ts_us: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float]


class Batch(Base):
    """The dedup ledger: one row per stored batch; its primary key makes ingest idempotent."""

    __tablename__ = "batches"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    samples: Mapped[int]
    received_at: Mapped[datetime]
    #: CAN time of the batch's oldest and newest sample (``None``: no samples, or a
    #: batch stored before revision 0003); the rules read the batch back by it.
    first_ts_us: Mapped[int | None] = mapped_column(BigInteger)
    last_ts_us: Mapped[int | None] = mapped_column(BigInteger)


class LatestState(Base):
    """The newest sample (by CAN timestamp) of each signal of each vehicle."""

    __tablename__ = "latest_state"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"), primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float]
    updated_at: Mapped[datetime]


class VehicleSignal(Base):
    """The vehicle's catalog as registered at its last hello: which signals it can decode."""

    __tablename__ = "vehicle_signals"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"), primary_key=True)


class EvictionRow(Base):
    """Samples the car's outbox evicted, stored in the transaction of the batch reporting them."""

    __tablename__ = "evictions"
    __table_args__ = (Index("ix_evictions_vehicle_sequence", "vehicle_id", "sequence"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"))
    samples: Mapped[int] = mapped_column(BigInteger)
    first_ts_us: Mapped[int] = mapped_column(BigInteger)
    last_ts_us: Mapped[int] = mapped_column(BigInteger)


class TriggerRow(Base):
    """A condition-triggered capture that fired, stored with the batch that reported it."""

    __tablename__ = "trigger_firings"
    __table_args__ = (Index("ix_trigger_firings_vehicle_ts", "vehicle_id", "ts_us"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str]
    ts_us: Mapped[int] = mapped_column(BigInteger)
    plan_version: Mapped[int] = mapped_column(BigInteger)


class PlanRow(Base):
    """Every version of every vehicle's collection plan; the highest version is the current one."""

    __tablename__ = "collection_plans"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str]
    #: The validated plan document, normalised (signal references as objects).
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class PlanStatusRow(Base):
    """What the car last reported about its plan (one row per vehicle, replaced on report)."""

    __tablename__ = "plan_status"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    running_version: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str]
    #: The newest version the car refused, 0 when none is outstanding.
    rejected_version: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str]
    consent_version: Mapped[int] = mapped_column(BigInteger)
    reported_at: Mapped[datetime]


class ConsentRow(Base):
    """Every version of the owner's consent; the highest version is in force."""

    __tablename__ = "consents"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: Granted purposes, sorted; every other purpose is withdrawn.
    purposes: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class FaultCodeRow(Base):
    """A fault code set or cleared; the unique key makes a resent report store nothing twice."""

    __tablename__ = "fault_codes"
    __table_args__ = (
        UniqueConstraint(
            "vehicle_id", "protocol", "bus", "source", "code", "state", "ts_us",
            name="uq_fault_codes_event",
        ),
        Index("ix_fault_codes_vehicle_ts", "vehicle_id", "ts_us"),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    report_id: Mapped[int] = mapped_column(BigInteger)
    protocol: Mapped[str]
    bus: Mapped[str]
    source: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str]
    state: Mapped[str]
    #: CAN time of the frame that set or cleared the code.
    ts_us: Mapped[int] = mapped_column(BigInteger)
    spn: Mapped[int] = mapped_column(BigInteger)
    fmi: Mapped[int]
    occurrences: Mapped[int] = mapped_column(BigInteger)
    dtc: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]


class AgentHealthRow(Base):
    """Every health report of every agent (retention comes with the retention job)."""

    __tablename__ = "agent_health"
    __table_args__ = (Index("ix_agent_health_vehicle_received", "vehicle_id", "received_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    received_at: Mapped[datetime]
    time_us: Mapped[int] = mapped_column(BigInteger)
    uptime_ms: Mapped[int] = mapped_column(BigInteger)
    frames_by_bus: Mapped[dict[str, int]] = mapped_column(JSON)
    decode_errors: Mapped[int] = mapped_column(BigInteger)
    unknown_ids: Mapped[int] = mapped_column(BigInteger)
    outbox_batches: Mapped[int] = mapped_column(BigInteger)
    outbox_bytes: Mapped[int] = mapped_column(BigInteger)
    evicted_samples: Mapped[int] = mapped_column(BigInteger)
    reconnects: Mapped[int] = mapped_column(BigInteger)
    ack_latency_p50_ms: Mapped[float]
    ack_latency_p99_ms: Mapped[float]
    plan_version: Mapped[int] = mapped_column(BigInteger)
    consent_version: Mapped[int] = mapped_column(BigInteger)
    counters: Mapped[dict[str, int]] = mapped_column(JSON)


# ---------------------------------------------------------------------- rules


class EventRow(Base):
    """An event a rule raised; ``event_id`` is deterministic, so re-processing adds nothing."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("vehicle_id", "event_id", name="uq_events_vehicle_event"),
        Index("ix_events_vehicle_ts", "vehicle_id", "ts_us"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    event_id: Mapped[str]
    kind: Mapped[str]
    #: CAN time of what the event is about.
    ts_us: Mapped[int] = mapped_column(BigInteger)
    severity: Mapped[str]
    details: Mapped[dict[str, object]] = mapped_column(JSON)
    #: The batch whose processing raised it.
    sequence: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class TripRow(Base):
    """A trip, stored as it grows (``end_us`` is NULL while it goes on), not computed on read."""

    __tablename__ = "trips"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    start_us: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    end_us: Mapped[int | None] = mapped_column(BigInteger)
    #: The end, or while it goes on the last time it was seen moving.
    last_us: Mapped[int] = mapped_column(BigInteger)
    distance_km: Mapped[float]
    duration_s: Mapped[float]
    idle_s: Mapped[float]
    idle_fuel_l: Mapped[float]
    fuel_used_l: Mapped[float | None]
    energy_used_kwh: Mapped[float | None]
    updated_at: Mapped[datetime]


class DailyIdleRow(Base):
    """Idle time and fuel wasted idling of one vehicle on one UTC day."""

    __tablename__ = "daily_idle"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    idle_s: Mapped[float]
    idle_fuel_l: Mapped[float]
    updated_at: Mapped[datetime]


class HealthRow(Base):
    """The vehicle's latest health score and the reasons behind it."""

    __tablename__ = "vehicle_health"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    score: Mapped[int]
    #: [{"code", "points", "text"}, ...]
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    as_of_us: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class RuleStateRow(Base):
    """The rule engine's snapshot of one vehicle; ``version`` guards against a lost update."""

    __tablename__ = "rule_state"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[dict[str, object]] = mapped_column(JSON)
    #: The highest ``fault_codes.id`` fed to the engine: newer ones go with the next batch.
    last_fault_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class RuleBatchRow(Base):
    """The rules' ledger: a batch with a row here was processed (and is never again)."""

    __tablename__ = "rule_batches"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    events: Mapped[int]
    processed_at: Mapped[datetime]


class ServiceRecordRow(Base):
    """A vehicle's model and last service, which maintenance is measured from."""

    __tablename__ = "service_records"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    model: Mapped[str | None]
    serviced_at_us: Mapped[int | None] = mapped_column(BigInteger)
    odometer_km: Mapped[float | None]
    updated_at: Mapped[datetime]


class SampleMinuteRow(Base):
    """Per-minute aggregates of a signal, the long-term history once raw samples expire.

    Raw samples are folded in exactly once, in the transaction that deletes
    them (see ``cloud.store.retention``): a sample that arrives late, after its
    minute was aggregated, is merged into the same row when it expires in turn.
    ``total`` over ``count`` is the mean. No foreign keys, like ``samples``.
    """

    __tablename__ = "sample_minutes"

    vehicle_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    signal_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    #: Microseconds since the Unix epoch at the start of the minute (UTC).
    minute_us: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
    minimum: Mapped[float]
    maximum: Mapped[float]
    total: Mapped[float]
