"""Per-minute aggregates of samples: the history kept once raw samples expire.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_FLOAT = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "sample_minutes",
        sa.Column("vehicle_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("signal_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("minute_us", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("minimum", _FLOAT, nullable=False),
        sa.Column("maximum", _FLOAT, nullable=False),
        sa.Column("total", _FLOAT, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sample_minutes")
