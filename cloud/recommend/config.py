"""Settings of the recommendation API: one pydantic-settings class, built by the entrypoint.

Per tenant: its catalog directory, its API keys (only their SHA-256 digests:
a leaked settings file does not leak a key), the key its vehicle pseudonyms
are derived from, its brand, ranking weights and reach policy, the energy
spec of each vehicle model, its time zone, and optionally the rule
configuration file that says which signals mean position, fuel and charge
(for contexts built from a vehicle's stored state). Environment prefix
``TELEHUB_RECOMMEND_``, nested values with ``__``; ``tenants`` is easiest given
as JSON, e.g.::

    TELEHUB_RECOMMEND_TENANTS='{"acme": {"catalog_dir": "catalogs/acme",
      "api_keys": {"head-unit": "<sha256 hex of the key>"},
      "pseudonym_key": "<at least 32 bytes>", "brand": "Acme"}}'
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.config import check_listen
from cloud.recommend.catalog import Connector
from cloud.recommend.context import Energy
from cloud.recommend.ranking import ReachPolicy, Weights

__all__ = [
    "MIN_KEY_BYTES",
    "ModelEnergy",
    "RankingSettings",
    "RecommendSettings",
    "TenantRecommendSettings",
    "hash_api_key",
]

MIN_KEY_BYTES = 32
_NAME = re.compile(r"[a-z0-9_-]{1,63}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def hash_api_key(key: str) -> str:
    """The digest an API key is configured by (SHA-256, hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


class _Strict(BaseModel):
    # Errors never repeat the input: it may be a key pasted where a digest belongs,
    # and settings errors end up in logs.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ModelEnergy(_Strict):
    """One vehicle model's energy: tank (l) or battery (kWh), consumption per 100 km."""

    energy: Energy
    capacity: float = Field(gt=0, le=2000)
    per_100km: float = Field(gt=0, le=200)
    connectors: frozenset[Connector] = frozenset()


_WEIGHTS, _REACH = Weights(), ReachPolicy()


class RankingSettings(_Strict):
    """Score weights and the reach policy (see ``cloud.recommend.ranking``, whose
    defaults these are)."""

    distance: float = Field(default=_WEIGHTS.distance, ge=0)
    urgency: float = Field(default=_WEIGHTS.urgency, ge=0)
    brand: float = Field(default=_WEIGHTS.brand, ge=0)
    price: float = Field(default=_WEIGHTS.price, ge=0)
    power: float = Field(default=_WEIGHTS.power, ge=0)
    detour_factor: float = Field(default=_REACH.detour_factor, ge=1, le=5)
    safety_margin: float = Field(default=_REACH.safety_margin, ge=0, lt=1)
    reserve_km: float = Field(default=_REACH.reserve_km, ge=0)
    max_search_km: float = Field(default=_REACH.max_search_km, gt=0, le=500)
    low_level_pct: float = Field(default=_REACH.low_level_pct, ge=0, le=100)
    critical_level_pct: float = Field(default=_REACH.critical_level_pct, ge=0, le=100)
    low_range_km: float = Field(default=_REACH.low_range_km, ge=0)
    critical_range_km: float = Field(default=_REACH.critical_range_km, ge=0)

    def weights(self) -> Weights:
        return Weights(**{name: getattr(self, name) for name in _fields(Weights)})

    def reach(self) -> ReachPolicy:
        return ReachPolicy(**{name: getattr(self, name) for name in _fields(ReachPolicy)})


def _fields(kind: type[Weights] | type[ReachPolicy]) -> list[str]:
    return [field.name for field in dataclasses.fields(kind)]


class TenantRecommendSettings(_Strict):
    catalog_dir: Path
    #: Client (recipient) name → SHA-256 hex of its API key. Each client gets its
    #: own pseudonyms of the same vehicle.
    api_keys: dict[str, str] = Field(default_factory=dict)
    pseudonym_key: SecretStr
    brand: str | None = None
    ranking: RankingSettings = RankingSettings()
    models: dict[str, ModelEnergy] = Field(default_factory=dict)
    default_model: ModelEnergy | None = None
    timezone: str = "UTC"
    #: A ``cloud.rules`` configuration (signal roles, fault severities) for contexts
    #: built from the vehicle's stored state; None: the rules' defaults.
    rules_file: Path | None = None

    @field_validator("api_keys")
    @classmethod
    def _valid_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for client, digest in value.items():
            if _NAME.fullmatch(client) is None:
                raise ValueError(f"client name {client!r} must be 1-63 of a-z, 0-9, _ or -")
            if _SHA256_HEX.fullmatch(digest) is None:
                # Never echo the value: it may be a key pasted by mistake.
                raise ValueError(f"api key of {client!r} must be a SHA-256 hex digest")
        return value

    @field_validator("pseudonym_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym_key must be at least {MIN_KEY_BYTES} bytes")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def model(self, name: str | None) -> ModelEnergy | None:
        return self.models.get(name or "", self.default_model)


class RecommendSettings(BaseSettings):
    """Settings of the recommendation API process."""

    model_config = SettingsConfigDict(
        env_prefix="TELEHUB_RECOMMEND_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
    )

    listen: str = "127.0.0.1:8300"
    tenants: dict[str, TenantRecommendSettings] = Field(default_factory=dict)
    #: Request bodies larger than this are refused (413) before they are parsed.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Seconds open requests get to finish on shutdown.
    grace_seconds: float = Field(default=5.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        return check_listen(value)

    @model_validator(mode="after")
    def _unique_keys(self) -> RecommendSettings:
        # One key must name one tenant: otherwise a tenant could see another's catalog.
        seen: dict[str, str] = {}
        for tenant, config in self.tenants.items():
            if _NAME.fullmatch(tenant) is None:
                raise ValueError(f"tenant name {tenant!r} must be 1-63 of a-z, 0-9, _ or -")
            for client, digest in config.api_keys.items():
                if digest in seen:
                    raise ValueError(f"{tenant}/{client} reuses the API key of {seen[digest]}")
                seen[digest] = f"{tenant}/{client}"
        return self
