"""The bundled synthetic sample catalog (see its README): one tenant, around Aarhus."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from cloud.recommend.config import RecommendSettings, hash_api_key

__all__ = ["SAMPLE_BRAND", "SAMPLE_TENANT", "sample_catalog_dir", "sample_settings"]

SAMPLE_TENANT = "demo-motors"
SAMPLE_BRAND = "Demo Motors"


def sample_catalog_dir() -> Path:
    """The directory of the sample tenant's catalog files."""
    return Path(str(resources.files("cloud.recommend.sample") / SAMPLE_TENANT))


def sample_settings(api_key: str, **overrides: object) -> RecommendSettings:
    """Settings serving the sample catalog to one client (``head-unit``) with ``api_key``.

    The pseudonym key is random per call: tokens of a sample server mean
    nothing after it stops.
    """
    tenant = {
        "catalog_dir": sample_catalog_dir(),
        "api_keys": {"head-unit": hash_api_key(api_key)},
        "pseudonym_key": secrets.token_urlsafe(32),
        "brand": SAMPLE_BRAND,
        "timezone": "Europe/Copenhagen",
        # A driver low on charge wants a fast charger more than a cheap slow one.
        "ranking": {"power": 1.2, "price": 0.3},
        "models": {
            "Aurora EV": {
                "energy": "electric",
                "capacity": 77,
                "per_100km": 17.5,
                "connectors": ["ccs", "type2"],
            },
            "Fjord 1.5": {"energy": "fuel", "capacity": 50, "per_100km": 5.8},
        },
        "default_model": {"energy": "fuel", "capacity": 50, "per_100km": 6.5},
    }
    return RecommendSettings.model_validate({"tenants": {SAMPLE_TENANT: tenant}, **overrides})
