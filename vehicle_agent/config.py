"""The agent's settings: one pydantic-settings class, read in ``main()`` and passed down.

Environment variables use the prefix ``TELEHUB_`` (``TELEHUB_VEHICLE_ID``,
``TELEHUB_TOKEN``, ``TELEHUB_GATEWAY``...); nested values use ``__`` or JSON
(``TELEHUB_BUSES='[{"name": "powertrain", "interface": "socketcan", "channel": "can0"}]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vehicle_agent.buses import BusConfig
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.consent import Purpose
from vehicle_agent.pending import OverflowPolicy


class DbcSettings(BaseModel):
    """One DBC file and the frames it decodes."""

    path: Path
    bus: str = "can"
    channel: str | None = Field(
        default=None,
        description="decode only frames of this channel or bus name; None: every channel",
    )
    j1939: bool | None = Field(default=None, description="None: detect from the DBC's attributes")

    def spec(self) -> DbcSpec:
        return DbcSpec(path=self.path, bus=self.bus, channel=self.channel, j1939=self.j1939)


class BusSettings(BaseModel):
    """One CAN bus of the car, read with python-can; ``name`` tags every frame."""

    name: str = Field(min_length=1)
    interface: str
    channel: str
    bitrate: int | None = None
    fd: bool = False
    data_bitrate: int | None = None

    def config(self) -> BusConfig:
        return BusConfig(
            name=self.name,
            interface=self.interface,
            channel=self.channel,
            bitrate=self.bitrate,
            fd=self.fd,
            data_bitrate=self.data_bitrate,
        )


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEHUB_", env_nested_delimiter="__")

    vehicle_id: str = Field(min_length=1, max_length=64)
    token: SecretStr
    gateway: str = "127.0.0.1:50051"
    dbc: list[DbcSettings] = Field(min_length=1)
    dbc_strict: bool = False

    # Exactly one source: a log file, one python-can interface and channel, or buses.
    log_file: Path | None = None
    log_channels: dict[str, str] = Field(
        default_factory=dict, description="log channel → bus name, e.g. {'1': 'powertrain'}"
    )
    realtime: bool = False
    speed: float = Field(default=1.0, gt=0)
    interface: str | None = None
    channel: str | None = None
    bitrate: int | None = None
    fd: bool = False
    buses: list[BusSettings] = Field(default_factory=list)

    batch_max_samples: int = Field(default=5000, ge=1, le=50_000)
    batch_max_age: float = Field(default=1.0, gt=0)
    compression: bool = True
    reconnect_initial: float = Field(default=0.2, gt=0, description="first retry delay, s")
    reconnect_max: float = Field(default=30.0, gt=0, description="longest retry delay, s")

    # The durable outbox; None keeps batches in memory only (lost on a crash).
    outbox: Path | None = Path("telehub-agent") / "outbox.sqlite"
    outbox_max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    outbox_synchronous: Literal["full", "normal"] = "full"
    overflow: OverflowPolicy | None = Field(
        default=None, description="None: block for log files, evict for live buses"
    )
    resume: bool = Field(default=True, description="resume a log replay where it stopped")

    location_quantum: float = Field(
        default=0.01, ge=0, description="round location-purpose signals to this (≈1 km)"
    )
    default_purpose: Purpose = Purpose.DIAGNOSTICS
    diagnostics: bool = True
    health_interval: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> AgentSettings:
        given = [self.log_file is not None, self.interface is not None, bool(self.buses)]
        if sum(given) != 1:
            raise ValueError("set exactly one source: log_file, interface with channel, or buses")
        if self.interface is not None and self.channel is None:
            raise ValueError(f"interface {self.interface!r} needs a channel")
        names = [b.name for b in self.buses]
        if len(set(names)) != len(names):
            raise ValueError(f"bus names must be unique, got {names}")
        return self

    @property
    def overflow_policy(self) -> OverflowPolicy:
        if self.overflow is not None:
            return self.overflow
        return OverflowPolicy.BLOCK if self.log_file is not None else OverflowPolicy.EVICT
