"""Fixtures of the recommendation tests: two tenants, each with its own catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.recommend.app import create_app
from cloud.recommend.catalog import Catalog
from cloud.recommend.config import RecommendSettings, hash_api_key
from cloud.recommend.importers import load_catalog
from cloud.recommend.sample import sample_catalog_dir
from cloud.recommend.service import RecommendService
from cloud.recommend.vehicle_state import VehicleStates
from tests.cloud.recommend.scenarios import BRAND, CATALOG

ACME_KEY = "acme-head-unit-key-0123456789"
ACME_APP_KEY = "acme-app-key-0123456789"
GLOBEX_KEY = "globex-head-unit-key-0123456789"


def make_settings(tmp_path: Path) -> RecommendSettings:
    return RecommendSettings.model_validate(
        {
            "tenants": {
                "acme": {
                    "catalog_dir": tmp_path / "acme",
                    "api_keys": {
                        "head-unit": hash_api_key(ACME_KEY),
                        "app": hash_api_key(ACME_APP_KEY),
                    },
                    "pseudonym_key": "acme-pseudonym-key-" + "p" * 32,
                    "brand": BRAND,
                    "timezone": "Europe/Copenhagen",
                    "models": {
                        "Volt": {
                            "energy": "electric",
                            "capacity": 60,
                            "per_100km": 18,
                            "connectors": ["ccs"],
                        }
                    },
                },
                "globex": {
                    "catalog_dir": sample_catalog_dir(),
                    "api_keys": {"head-unit": hash_api_key(GLOBEX_KEY)},
                    "pseudonym_key": "globex-pseudonym-key-" + "p" * 32,
                },
            }
        }
    )


def make_app(tmp_path: Path, states: VehicleStates | None = None) -> FastAPI:
    settings = make_settings(tmp_path)
    catalogs: dict[str, Catalog] = {"acme": CATALOG, "globex": load_catalog(sample_catalog_dir())}
    return create_app(settings, service=RecommendService(settings, catalogs), states=states)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
