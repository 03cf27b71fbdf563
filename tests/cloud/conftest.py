"""Fixtures of the cloud tests: real SQLite stores in tmp_path, a real gateway on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest
from pydantic import SecretStr

from cloud.auth import issue_token
from cloud.config import CloudSettings, TenantSettings
from cloud.server import GatewayServer
from cloud.store import TenantRegistry, TenantStore
from telehub.v1 import telemetry_pb2_grpc
from tests.conftest import empty_schema

SECRET_ACME = SecretStr("acme-secret-0123456789abcdef-0123456789")
SECRET_GLOBEX = SecretStr("globex-secret-0123456789abcdef-012345678")
VEHICLE = "WVW-TEST-0001"
MAX_BATCH_SAMPLES = 1_000
MAX_MESSAGE_BYTES = 64 * 1024


def make_settings(data_dir: Path, **overrides: object) -> CloudSettings:
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "data_dir": data_dir,
        "tenants": {
            "acme": TenantSettings(token_secret=SECRET_ACME),
            "globex": TenantSettings(token_secret=SECRET_GLOBEX),
        },
        "max_batch_samples": MAX_BATCH_SAMPLES,
        "max_message_bytes": MAX_MESSAGE_BYTES,
        "grace_seconds": 0.5,
    }
    values.update(overrides)
    return CloudSettings.model_validate(values)


@pytest.fixture
def settings(tmp_path: Path) -> CloudSettings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def registry(settings: CloudSettings) -> Iterator[TenantRegistry]:
    registry = TenantRegistry(settings)
    registry.store("acme").enroll_vehicle(VEHICLE)
    yield registry
    registry.close()


@pytest.fixture
async def channel(gateway: GatewayServer) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(gateway.target)
    yield channel
    await channel.close(None)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> telemetry_pb2_grpc.TelemetryGatewayAsyncStub:
    return telemetry_pb2_grpc.TelemetryGatewayStub(channel)


@pytest.fixture
def token() -> str:
    return issue_token("acme", VEHICLE, SECRET_ACME)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def tenant_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty tenant database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tenant.db'}"
    url: str = request.getfixturevalue("postgres_tenant_url")
    return url


@pytest.fixture
def postgres_tenant_url(postgres_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, emptied again after the test (it is shared)."""
    yield postgres_url
    empty_schema(postgres_url)


@pytest.fixture
def store(tenant_url: str) -> Iterator[TenantStore]:
    """An empty tenant store on each backend."""
    store = TenantStore.open(tenant_url)
    yield store
    store.close()
