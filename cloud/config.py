"""Configuration of the cloud deployable: one pydantic-settings class.

Built once by the entrypoint (``CloudSettings()`` reads ``TELEHUB_*`` variables)
and passed down; nothing here runs at import time. Nested values use ``__``,
e.g. ``TELEHUB_TENANTS__ACME__TOKEN_SECRET=...`` or
``TELEHUB_TENANTS__ACME__DATABASE_URL=postgresql+psycopg://...``.

``event_bus`` (``TELEHUB_EVENT_BUS``) is ``memory`` (the in-process bus, for
one process) or the URL of a NATS server with JetStream, ``nats://host:port``,
shared by every gateway and worker process of the deployment.

``default_consent`` is the consent a vehicle has until its owner's consent is
set (consent version 0); a tenant may override the deployment's default. See
``cloud.control`` for how version 0 is agreed with the car.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.domain import AGENT_DEFAULT_PURPOSES, Purpose

__all__ = ["MIN_SECRET_BYTES", "CloudSettings", "RetentionPolicy", "TenantSettings"]

_TENANT_NAME = re.compile(r"[a-z0-9_-]{1,63}")
_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(?P<port>\d{1,5})")
_NATS_URL = re.compile(r"(nats|tls)://(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s\[\]@]+):(?P<port>\d{1,5})")

#: HS256 keys shorter than the hash output weaken the signature (and PyJWT warns).
MIN_SECRET_BYTES = 32


class RetentionPolicy(BaseModel):
    """How long each class of a tenant's data is kept, in days (None: for ever).

    Raw samples are folded into per-minute aggregates as they expire, so the
    aggregates are the long-term history; events and trips (with the daily
    idle totals) are the rules' results. Enforced by ``telehub cloud retention``
    and, every ``CloudSettings.retention_interval_seconds``, by the gateway.
    """

    model_config = ConfigDict(extra="forbid")

    raw_samples_days: float | None = Field(default=90.0, gt=0)
    aggregates_days: float | None = Field(default=3 * 365.0, gt=0)
    events_days: float | None = Field(default=3 * 365.0, gt=0)
    trips_days: float | None = Field(default=3 * 365.0, gt=0)


class TenantSettings(BaseModel):
    """One automaker: where its data lives and the key that signs its vehicles' tokens."""

    #: ``None`` keeps the tenant in a SQLite file under ``CloudSettings.data_dir``.
    database_url: str | None = None
    token_secret: SecretStr
    #: ``None`` uses ``CloudSettings.default_consent``.
    default_consent: frozenset[Purpose] | None = None
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)

    @field_validator("token_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # The message never repeats the secret: settings errors end up in logs.
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"token_secret must be at least {MIN_SECRET_BYTES} bytes")
        return value


class CloudSettings(BaseSettings):
    """Settings of the cloud gateway process."""

    model_config = SettingsConfigDict(
        env_prefix="TELEHUB_", env_nested_delimiter="__", extra="forbid"
    )

    #: ``host:port``; port 0 lets the OS pick a free port.
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("telehub-data")
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    max_batch_samples: int = Field(default=50_000, ge=1, le=2**32 - 1)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Seconds running streams get to finish on shutdown before they are cancelled.
    grace_seconds: float = Field(default=5.0, ge=0)
    #: Consent of a vehicle whose owner's consent was never set: every purpose but location.
    default_consent: frozenset[Purpose] = Field(default=AGENT_DEFAULT_PURPOSES)
    #: How often a live session re-reads its vehicle's plan and consent versions, so
    #: that a change made by another process (the CLI, another gateway) reaches the car.
    control_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: How often the gateway enforces every tenant's retention policy; 0: never
    #: (then run ``telehub cloud retention`` from a scheduler).
    retention_interval_seconds: float = Field(default=3600.0, ge=0)
    #: ``memory`` or ``nats://host:port`` (see the module docstring).
    event_bus: str = "memory"
    #: Unacknowledged messages the bus holds per consumer (memory) or per tenant
    #: stream (NATS) before a publish is refused.
    event_bus_capacity: int = Field(default=100_000, ge=1)
    #: Deliveries of a message whose handler keeps failing, before it is dead-lettered.
    event_max_deliver: int = Field(default=5, ge=1, le=1000)
    #: Attempts to publish a commit notification before it is counted as lost.
    event_publish_attempts: int = Field(default=3, ge=1, le=10)
    #: Folder of the tenants' rule configurations (``<tenant>.json``, see
    #: ``cloud.rules.config``); ``None``, or a tenant without a file: the defaults.
    rules_dir: Path | None = None

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        match = _LISTEN.fullmatch(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(f"listen must be host:port with a port 0-65535, got {value!r}")
        return value

    @field_validator("event_bus")
    @classmethod
    def _valid_event_bus(cls, value: str) -> str:
        if value == "memory":
            return value
        match = _NATS_URL.fullmatch(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(
                f"event_bus must be 'memory' or nats://host:port (tls://host:port), got {value!r}"
            )
        return value

    @field_validator("tenants")
    @classmethod
    def _valid_tenant_names(cls, value: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        # Tenant names become file names and token key ids: keep them boring.
        for name in value:
            if _TENANT_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"tenant name {name!r} must be 1-63 characters of lowercase a-z, 0-9, _ or -"
                )
        return value

    def database_url(self, tenant: str) -> str:
        """The SQLAlchemy URL of ``tenant``'s own store.

        Raises ``KeyError`` for a tenant that is not configured.
        """
        configured = self.tenants[tenant].database_url
        if configured is not None:
            return configured
        return f"sqlite:///{self.data_dir / f'{tenant}.db'}"

    def retention_of(self, tenant: str) -> RetentionPolicy:
        """The tenant's retention policy."""
        return self.tenants[tenant].retention

    def default_consent_of(self, tenant: str) -> frozenset[Purpose]:
        """The consent ``tenant``'s vehicles have until one is set (version 0).

        Raises ``KeyError`` for a tenant that is not configured.
        """
        own = self.tenants[tenant].default_consent
        return own if own is not None else self.default_consent

    def token_secrets(self) -> dict[str, SecretStr]:
        """Every tenant's token signing key, by tenant name."""
        return {name: tenant.token_secret for name, tenant in self.tenants.items()}
