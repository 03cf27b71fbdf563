"""Samples for bulk loading: no surrogate key, no foreign keys; day partitions on PostgreSQL.

The table is rebuilt and its rows copied over (in CAN time order): on
PostgreSQL as a table partitioned by range of ``ts_us`` with its catch-all
partitions and one partition per day the old rows cover; on SQLite as a
plain table. See ``cloud.store.models.Sample`` for why.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.store.dialect import (
    BIG_ID,
    DAY_US,
    create_catch_all_partitions,
    create_day_partitions,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEX = "ix_samples_vehicle_signal_ts"
_INDEX_COLUMNS = ["vehicle_id", "signal_id", "ts_us"]
_COLUMNS = ("vehicle_id", "signal_id", "ts_us", "value")


def upgrade() -> None:
    bind = op.get_bind()
    op.drop_index(_INDEX, table_name="samples")
    op.rename_table("samples", "samples_0001")
    op.create_table(
        "samples",
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        postgresql_partition_by="RANGE (ts_us)",
    )
    op.create_index(_INDEX, "samples", _INDEX_COLUMNS)
    if bind.dialect.name == "postgresql":
        create_catch_all_partitions(bind)
        days = bind.execute(
            sa.text("SELECT DISTINCT div(ts_us, :day) FROM samples_0001 WHERE ts_us >= 0"),
            {"day": DAY_US},
        ).scalars()
        create_day_partitions(bind, (int(day) for day in days))
    _copy_rows("samples_0001", "samples", order_by=("ts_us", "id"))
    op.drop_table("samples_0001")


def downgrade() -> None:
    op.create_table(
        "samples_0002",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), nullable=False),
        sa.Column("signal_id", sa.Integer(), sa.ForeignKey("signals.id"), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
    )
    _copy_rows("samples", "samples_0002", order_by=("ts_us",))
    op.drop_index(_INDEX, table_name="samples")
    # On PostgreSQL this drops every partition with the table.
    op.drop_table("samples")
    op.rename_table("samples_0002", "samples")
    op.create_index(_INDEX, "samples", _INDEX_COLUMNS)


def _copy_rows(source: str, target: str, *, order_by: tuple[str, ...]) -> None:
    """INSERT INTO target SELECT the sample columns FROM source, in the given order."""
    read = sa.table(source, *(sa.column(name) for name in dict.fromkeys((*_COLUMNS, *order_by))))
    write = sa.table(target, *(sa.column(name) for name in _COLUMNS))
    rows = sa.select(*(read.c[name] for name in _COLUMNS)).order_by(
        *(read.c[name] for name in order_by)
    )
    op.execute(sa.insert(write).from_select(list(_COLUMNS), rows))
