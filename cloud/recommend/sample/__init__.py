"""The bundled synthetic sample catalog (see its README): one tenant, around Aarhus."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SAMPLE_BRAND", "SAMPLE_TENANT", "sample_catalog_dir"]

SAMPLE_TENANT = "demo-motors"
SAMPLE_BRAND = "Demo Motors"


def sample_catalog_dir() -> Path:
    """The directory of the sample tenant's catalog files."""
    return Path(str(resources.files("cloud.recommend.sample") / SAMPLE_TENANT))
