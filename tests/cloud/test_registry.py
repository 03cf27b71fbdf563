"""TenantRegistry: lazy, per-tenant stores at each tenant's own URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from cloud.config import CloudSettings, TenantSettings
from cloud.errors import StoreError, UnknownTenant
from cloud.store import TenantRegistry
from tests.cloud.conftest import SECRET_ACME, make_settings


def test_stores_open_lazily_in_their_own_files(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    with TenantRegistry(settings) as registry:
        assert registry.tenants == ["acme", "globex"]
        assert not (tmp_path / "data").exists()
        acme = registry.store("acme")
        assert registry.store("acme") is acme
        assert (tmp_path / "data" / "acme.db").exists()
        assert not (tmp_path / "data" / "globex.db").exists()
        acme.enroll_vehicle("car-1")
        assert not registry.store("globex").is_enrolled("car-1")


def test_explicit_url_is_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'acme-store.sqlite'}"
    settings = CloudSettings(
        data_dir=tmp_path / "data",
        tenants={"acme": TenantSettings(database_url=url, token_secret=SECRET_ACME)},
    )
    with TenantRegistry(settings) as registry:
        registry.store("acme").enroll_vehicle("car-1")
    assert (tmp_path / "elsewhere" / "acme-store.sqlite").exists()
    assert not (tmp_path / "data").exists()


def test_unknown_tenant(tmp_path: Path) -> None:
    with (
        TenantRegistry(make_settings(tmp_path)) as registry,
        pytest.raises(UnknownTenant, match="'initech' is not configured"),
    ):
        registry.store("initech")


def test_unsupported_database_is_refused_on_open(tmp_path: Path) -> None:
    settings = CloudSettings(
        tenants={
            "acme": TenantSettings(
                database_url="mysql://db.example/telehub", token_secret=SecretStr("s" * 32)
            )
        }
    )
    with (
        TenantRegistry(settings) as registry,
        pytest.raises(StoreError, match="unsupported database 'mysql'"),
    ):
        registry.store("acme")


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    registry = TenantRegistry(make_settings(tmp_path))
    store = registry.store("acme")
    registry.close()
    registry.close()
    with pytest.raises(StoreError, match="closed"):
        registry.store("acme")
    with pytest.raises(StoreError, match="closed"):
        store.count_samples()
