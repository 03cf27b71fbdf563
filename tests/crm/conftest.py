"""Fixtures of the CRM tests: two tenants with their own stores, the real app through
its test client, an administrator's key per tenant, and a small world of records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cloud.config import CloudSettings, TenantSettings
from cloud.store import TenantRegistry
from crm.api.app import create_app
from crm.auth import Role
from crm.config import CrmSettings
from crm.keys import issue_api_key
from crm.store import CrmStores
from tests.conftest import empty_schema

CRM_SECRET = SecretStr("crm-token-secret-0123456789abcdef-0123")
TENANT_SECRET = SecretStr("tenant-secret-0123456789abcdef-0123456")
PAST = datetime(2020, 1, 1, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat()


def soon(seconds: float = 3600) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def acme_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The first tenant's database on each backend (the second stays on SQLite)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'acme.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    empty_schema(url)


@pytest.fixture
def crm_settings() -> CrmSettings:
    return CrmSettings(
        listen="127.0.0.1:0",
        token_secret=CRM_SECRET,
        webhook_attempts=3,
        webhook_backoff_seconds=0.05,
        webhook_timeout_seconds=2.0,
    )


@pytest.fixture
def cloud_settings(tmp_path: Path, acme_url: str) -> CloudSettings:
    return CloudSettings(
        listen="127.0.0.1:0",
        data_dir=tmp_path,
        tenants={
            "acme": TenantSettings(token_secret=TENANT_SECRET, database_url=acme_url),
            "globex": TenantSettings(token_secret=TENANT_SECRET),
        },
    )


@pytest.fixture
def stores(cloud_settings: CloudSettings) -> Iterator[CrmStores]:
    with TenantRegistry(cloud_settings) as registry:
        yield CrmStores(registry)


@pytest.fixture
def client(crm_settings: CrmSettings, stores: CrmStores) -> Iterator[TestClient]:
    app = create_app(crm_settings, stores, deliver_webhooks=False)
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


def admin_key(stores: CrmStores, tenant: str) -> str:
    return issue_api_key(
        stores.store(tenant), tenant, role=Role.ADMIN, dealer_id=None, label="tests"
    ).text


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class World:
    """One dealer with a key, a customer owning a vehicle with consent and a grant."""

    client: TestClient
    admin: dict[str, str]
    dealer: dict[str, str]
    dealer_id: int
    vehicle_id: int
    customer_id: int
    consent_id: int
    grant_id: int

    def get(self, path: str, headers: dict[str, str], **params: Any) -> Any:
        return self.client.get(path, headers=headers, params=params)

    def post(self, path: str, headers: dict[str, str], body: Any = None) -> Any:
        return self.client.post(path, headers=headers, json=body)


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_world(
    client: TestClient,
    admin: dict[str, str],
    *,
    code: str = "D1",
    vin: str = "WVWZZZ1JZXW000001",
    telemetry_id: str | None = "car-1",
) -> World:
    dealer = created(client.post("/v1/dealers", headers=admin, json={
        "code": code, "name": f"Dealer {code}",
        "service_centres": [{"name": "Main", "address": "1 Road", "latitude": 48.1,
                             "longitude": 11.5}],
    }))  # fmt: skip
    key = created(client.post("/v1/api-keys", headers=admin, json={
        "role": "dealer", "dealer_id": dealer["id"], "label": code,
    }))["key"]  # fmt: skip
    customer = created(client.post("/v1/customers", headers=admin, json={
        "name": "Erika", "email": f"erika-{code}@example.com",
    }))  # fmt: skip
    vehicle = created(client.post("/v1/vehicles", headers=admin, json={
        "vin": vin, "telemetry_id": telemetry_id, "model": "ID.4", "year": 2024,
        "preferred_dealer_id": dealer["id"],
    }))  # fmt: skip
    created(client.post(f"/v1/vehicles/{vehicle['id']}/parties", headers=admin, json={
        "customer_id": customer["id"], "role": "owner", "valid_from": iso(PAST),
    }))  # fmt: skip
    consent_ids = [
        created(client.post("/v1/consents", headers=admin, json={
            "vehicle_id": vehicle["id"], "customer_id": customer["id"], "purpose": purpose,
            "dealer_id": dealer["id"], "valid_from": iso(PAST), "source": "app",
        }))["id"]
        for purpose in ("diagnostics", "after_sales")
    ]  # fmt: skip
    grant = created(client.post("/v1/grants", headers=admin, json={
        "dealer_id": dealer["id"], "vehicle_id": vehicle["id"],
        "purposes": ["diagnostics", "after_sales"],
        "fields": ["health", "faults", "mileage", "service"], "valid_from": iso(PAST),
    }))  # fmt: skip
    return World(
        client, admin, bearer(key), dealer["id"], vehicle["id"], customer["id"],
        consent_ids[0], grant["id"],
    )  # fmt: skip


@pytest.fixture
def admin(stores: CrmStores) -> dict[str, str]:
    return bearer(admin_key(stores, "acme"))


@pytest.fixture
def world(client: TestClient, admin: dict[str, str]) -> World:
    return make_world(client, admin)
