"""Configuration of the CRM deployable: one pydantic-settings class.

Built once by the entrypoint (``CrmSettings()`` reads ``TELEHUB_CRM_*``
variables) and passed down; nothing here runs at import time. The tenants and
their database URLs are the cloud's (``cloud.config.CloudSettings``): the CRM's
tables live in each automaker's own store, beside its telemetry.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CrmSettings"]

_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(?P<port>\d{1,5})")
_MIN_SECRET_BYTES = 32


class CrmSettings(BaseSettings):
    """Settings of the CRM API process."""

    model_config = SettingsConfigDict(env_prefix="TELEHUB_CRM_", extra="forbid")

    #: ``host:port``; port 0 lets the OS pick a free port.
    listen: str = "127.0.0.1:8080"
    #: Signs the OAuth2 client-credentials tokens (HS256); at least 32 bytes.
    token_secret: SecretStr
    token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    #: Seconds a verified API key is trusted without reading its row again. A key
    #: revoked through this process stops at once; through another, within this time.
    key_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    #: Attempts per webhook delivery before it becomes a dead letter.
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    #: Delay before the first retry; each further retry waits twice as long, up to the cap.
    webhook_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    webhook_backoff_cap_seconds: float = Field(default=300.0, gt=0, le=86_400)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    #: Connections per tenant of the pool that serves the dealers' health list on
    #: PostgreSQL (one statement per page, in the event loop); 0 serves it through
    #: SQLAlchemy in the thread pool, as on SQLite.
    health_pool_size: int = Field(default=4, ge=0, le=64)
    #: Seconds a health-list request waits for a connection before it gets a 503.
    health_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Seconds open requests get to finish on shutdown.
    grace_seconds: float = Field(default=5.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        match = _LISTEN.fullmatch(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(f"listen must be host:port with a port 0-65535, got {value!r}")
        return value

    @field_validator("token_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < _MIN_SECRET_BYTES:
            raise ValueError(f"token_secret must be at least {_MIN_SECRET_BYTES} bytes")
        return value

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])
