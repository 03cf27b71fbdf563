"""Baseline: the schema ``metadata.create_all`` built before migrations existed.

Stores made before Alembic took over have some or all of these tables and no
``alembic_version``; since tables were only ever added, never changed, this
revision creates just the tables that are missing, so such a store upgrades
like an empty one.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.store.dialect import BIG_ID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_FLOAT = sa.Float(precision=53)


def _vehicle(*, key: bool = False) -> sa.Column[int]:
    """The vehicle a row belongs to; ``key``: part of the primary key."""
    return sa.Column(
        "vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), primary_key=key, nullable=False
    )


def _signal(*, key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "signal_id", sa.Integer(), sa.ForeignKey("signals.id"), primary_key=key, nullable=False
    )


def _version() -> sa.Column[int]:
    return sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False)


def _big(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def _tables() -> list[tuple[sa.Table, list[tuple[str, list[str]]]]]:
    """Every baseline table with its indexes (name, columns), parents first."""
    meta = sa.MetaData()
    vehicles = sa.Table(
        "vehicles", meta,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("vehicle_id", sa.String(), nullable=False, unique=True),
        sa.Column("enrolled_at", _TIME, nullable=False),
        sa.Column("agent_version", sa.String(), nullable=True),
        sa.Column("catalog_id", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", _TIME, nullable=True),
        _big("last_sequence"),
    )  # fmt: skip
    signals = sa.Table(
        "signals", meta,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bus", sa.String(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        _big("frame_id"),
        sa.Column("is_extended", sa.Boolean(), nullable=False),
        sa.Column("unit", sa.String(), nullable=False),
        sa.Column("minimum", _FLOAT, nullable=True),
        sa.Column("maximum", _FLOAT, nullable=True),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("is_float", sa.Boolean(), nullable=False),
        sa.Column("pgn", sa.Integer(), nullable=False),
        sa.UniqueConstraint("bus", "message", "name"),
    )  # fmt: skip
    samples = sa.Table(
        "samples", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(), _signal(), _big("ts_us"),
        sa.Column("value", _FLOAT, nullable=False),
    )  # fmt: skip
    batches = sa.Table(
        "batches", meta,
        _vehicle(key=True),
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
    )  # fmt: skip
    latest = sa.Table(
        "latest_state", meta,
        _vehicle(key=True),
        _signal(key=True),
        _big("ts_us"),
        sa.Column("value", _FLOAT, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )  # fmt: skip
    vehicle_signals = sa.Table(
        "vehicle_signals", meta,
        _vehicle(key=True),
        _signal(key=True),
    )  # fmt: skip
    evictions = sa.Table(
        "evictions", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(), _big("sequence"), _signal(), _big("samples"),
        _big("first_ts_us"), _big("last_ts_us"),
    )  # fmt: skip
    triggers = sa.Table(
        "trigger_firings", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(), _big("sequence"),
        sa.Column("name", sa.String(), nullable=False),
        _big("ts_us"), _big("plan_version"),
    )  # fmt: skip
    plans = sa.Table(
        "collection_plans", meta,
        _vehicle(key=True),
        _version(),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )  # fmt: skip
    plan_status = sa.Table(
        "plan_status", meta,
        _vehicle(key=True),
        _big("running_version"),
        sa.Column("state", sa.String(), nullable=False),
        _big("rejected_version"),
        sa.Column("reason", sa.String(), nullable=False),
        _big("consent_version"),
        sa.Column("reported_at", _TIME, nullable=False),
    )  # fmt: skip
    consents = sa.Table(
        "consents", meta,
        _vehicle(key=True),
        _version(),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )  # fmt: skip
    faults = sa.Table(
        "fault_codes", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(), _big("report_id"),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("bus", sa.String(), nullable=False),
        _big("source"),
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        _big("ts_us"), _big("spn"),
        sa.Column("fmi", sa.Integer(), nullable=False),
        _big("occurrences"), _big("dtc"), _big("status"),
        sa.Column("received_at", _TIME, nullable=False),
        sa.UniqueConstraint(
            "vehicle_id", "protocol", "bus", "source", "code", "state", "ts_us",
            name="uq_fault_codes_event",
        ),
    )  # fmt: skip
    health = sa.Table(
        "agent_health", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(),
        sa.Column("received_at", _TIME, nullable=False),
        _big("time_us"), _big("uptime_ms"),
        sa.Column("frames_by_bus", sa.JSON(), nullable=False),
        _big("decode_errors"), _big("unknown_ids"), _big("outbox_batches"), _big("outbox_bytes"),
        _big("evicted_samples"), _big("reconnects"),
        sa.Column("ack_latency_p50_ms", _FLOAT, nullable=False),
        sa.Column("ack_latency_p99_ms", _FLOAT, nullable=False),
        _big("plan_version"), _big("consent_version"),
        sa.Column("counters", sa.JSON(), nullable=False),
    )  # fmt: skip
    return [
        (vehicles, []),
        (signals, []),
        (samples, [("ix_samples_vehicle_signal_ts", ["vehicle_id", "signal_id", "ts_us"])]),
        (batches, []),
        (latest, []),
        (vehicle_signals, []),
        (evictions, [("ix_evictions_vehicle_sequence", ["vehicle_id", "sequence"])]),
        (triggers, [("ix_trigger_firings_vehicle_ts", ["vehicle_id", "ts_us"])]),
        (plans, []),
        (plan_status, []),
        (consents, []),
        (faults, [("ix_fault_codes_vehicle_ts", ["vehicle_id", "ts_us"])]),
        (health, [("ix_agent_health_vehicle_received", ["vehicle_id", "received_at"])]),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table, indexes in _tables():
        if table.name in existing:
            continue
        table.create(op.get_bind())
        for name, columns in indexes:
            op.create_index(name, table.name, columns)


def downgrade() -> None:
    for table, _ in reversed(_tables()):
        op.drop_table(table.name)
