"""Tables of one tenant's database (every tenant has its own database).

``create_schema`` builds them with ``metadata.create_all`` for now; Alembic
migrations replace it in a later issue, starting from exactly this schema.

Unsigned 64-bit values (the agent's ``catalog_id``) do not fit a signed
BIGINT, so they are stored two's-complement: ``to_signed64`` on the way in,
``to_unsigned64`` on the way out. Sequences stay below 2**63 (the gateway
rejects larger ones), so they are stored as they are.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
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
    "Base",
    "Batch",
    "LatestState",
    "Sample",
    "Signal",
    "Vehicle",
    "create_schema",
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
    """One value of one signal at one CAN timestamp (narrow rows, appended only)."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_vehicle_signal_ts", "vehicle_id", "signal_id", "ts_us"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"))
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


class LatestState(Base):
    """The newest sample (by CAN timestamp) of each signal of each vehicle."""

    __tablename__ = "latest_state"

    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), primary_key=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"), primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float]
    updated_at: Mapped[datetime]


def create_schema(engine: Engine) -> None:
    """Create every missing table (no migrations yet; Alembic comes later)."""
    Base.metadata.create_all(engine)
