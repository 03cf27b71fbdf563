"""The agent's settings: one pydantic-settings class, read in ``main()`` and passed down.

Environment variables use the prefix ``TELEHUB_`` (``TELEHUB_VEHICLE_ID``,
``TELEHUB_TOKEN``, ``TELEHUB_GATEWAY``...); nested values use ``__``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vehicle_agent.catalog import DbcSpec
from vehicle_agent.pending import OverflowPolicy


class DbcSettings(BaseModel):
    """One DBC file and the frames it decodes."""

    path: Path
    bus: str = "can"
    channel: str | None = Field(
        default=None, description="decode only frames from this channel; None: every channel"
    )
    j1939: bool | None = Field(default=None, description="None: detect from the DBC's attributes")

    def spec(self) -> DbcSpec:
        return DbcSpec(path=self.path, bus=self.bus, channel=self.channel, j1939=self.j1939)


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TELEHUB_", env_nested_delimiter="__")

    vehicle_id: str = Field(min_length=1, max_length=64)
    token: SecretStr
    gateway: str = "127.0.0.1:50051"
    dbc: list[DbcSettings] = Field(min_length=1)
    dbc_strict: bool = False

    # Exactly one source: a log file, or a python-can interface and channel.
    log_file: Path | None = None
    realtime: bool = False
    speed: float = Field(default=1.0, gt=0)
    interface: str | None = None
    channel: str | None = None
    bitrate: int | None = None
    fd: bool = False

    batch_max_samples: int = Field(default=1000, ge=1, le=50_000)
    batch_max_age: float = Field(default=1.0, gt=0)
    buffer_max_batches: int = Field(default=1024, ge=1)
    overflow: OverflowPolicy | None = Field(
        default=None, description="None: block for log files, drop_oldest for live buses"
    )
    compression: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> AgentSettings:
        if (self.log_file is None) == (self.interface is None):
            raise ValueError("set exactly one source: log_file, or interface with channel")
        if self.interface is not None and self.channel is None:
            raise ValueError(f"interface {self.interface!r} needs a channel")
        return self

    @property
    def overflow_policy(self) -> OverflowPolicy:
        if self.overflow is not None:
            return self.overflow
        return OverflowPolicy.BLOCK if self.log_file is not None else OverflowPolicy.DROP_OLDEST
