"""Rules: events, trips, daily idle, health, rule state and its ledger, service records.

Also the time range of each batch in the ``batches`` ledger, by which the
rules read a batch's samples back (samples carry no sequence). Batches stored
before this revision have none (NULL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.store.dialect import BIG_ID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_FLOAT = sa.Float(precision=53)
_BATCH_RANGE = ("first_ts_us", "last_ts_us")


def _vehicle(*, key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), primary_key=key, nullable=False
    )


def _big(name: str, *, key: bool = False, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), primary_key=key, autoincrement=False, nullable=nullable)


def _float(name: str, *, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, _FLOAT, nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _updated() -> sa.Column[object]:
    return sa.Column("updated_at", _TIME, nullable=False)


def _tables() -> list[tuple[sa.Table, list[tuple[str, list[str]]]]]:
    """Every table of this revision with its indexes (name, columns)."""
    meta = sa.MetaData()
    sa.Table("vehicles", meta, sa.Column("id", sa.Integer(), primary_key=True))
    events = sa.Table(
        "events", meta,
        sa.Column("id", BIG_ID, primary_key=True),
        _vehicle(), _text("event_id"), _text("kind"), _big("ts_us"), _text("severity"),
        sa.Column("details", sa.JSON(), nullable=False),
        _big("sequence"),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint("vehicle_id", "event_id", name="uq_events_vehicle_event"),
    )  # fmt: skip
    trips = sa.Table(
        "trips", meta,
        _vehicle(key=True), _big("start_us", key=True), _big("end_us", nullable=True),
        _big("last_us"), _float("distance_km"), _float("duration_s"), _float("idle_s"),
        _float("idle_fuel_l"), _float("fuel_used_l", nullable=True),
        _float("energy_used_kwh", nullable=True), _updated(),
    )  # fmt: skip
    daily_idle = sa.Table(
        "daily_idle", meta,
        _vehicle(key=True),
        sa.Column("day", sa.Date(), primary_key=True, nullable=False),
        _float("idle_s"), _float("idle_fuel_l"), _updated(),
    )  # fmt: skip
    health = sa.Table(
        "vehicle_health", meta,
        _vehicle(key=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        _big("as_of_us"), _updated(),
    )  # fmt: skip
    state = sa.Table(
        "rule_state", meta,
        _vehicle(key=True), _big("version"),
        sa.Column("state", sa.JSON(), nullable=False),
        _big("last_fault_id"), _updated(),
    )  # fmt: skip
    ledger = sa.Table(
        "rule_batches", meta,
        _vehicle(key=True), _big("sequence", key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("processed_at", _TIME, nullable=False),
    )  # fmt: skip
    service = sa.Table(
        "service_records", meta,
        _vehicle(key=True), _text("model", nullable=True),
        _big("serviced_at_us", nullable=True), _float("odometer_km", nullable=True), _updated(),
    )  # fmt: skip
    return [
        (events, [("ix_events_vehicle_ts", ["vehicle_id", "ts_us"])]),
        (trips, []),
        (daily_idle, []),
        (health, []),
        (state, []),
        (ledger, []),
        (service, []),
    ]


def upgrade() -> None:
    for name in _BATCH_RANGE:
        op.add_column("batches", sa.Column(name, sa.BigInteger(), nullable=True))
    for table, indexes in _tables():
        table.create(op.get_bind())
        for name, columns in indexes:
            op.create_index(name, table.name, columns)


def downgrade() -> None:
    for table, _ in reversed(_tables()):
        op.drop_table(table.name)
    # SQLite drops a column by rebuilding the table (batch mode); PostgreSQL alters it.
    with op.batch_alter_table("batches") as batch:
        for name in _BATCH_RANGE:
            batch.drop_column(name)
