"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cloud.config import CloudSettings, TenantSettings
from cloud.server import GatewayServer, start_gateway
from cloud.store import TenantRegistry


def service_absent(reason: str) -> None:
    """Skip the test for a service that is not there; fail it in CI.

    TELEHUB_REQUIRE_SERVICES=1 (set by .ci/run, which starts the services) turns
    the skip into a failure, so CI never passes by skipping.
    """
    if os.environ.get("TELEHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database on the test server, dropped on leaving.

    Skips when the server is unreachable, unless TELEHUB_REQUIRE_SERVICES=1 (CI),
    where an absent server is a failure.
    """
    base = make_url(
        os.environ.get(
            "TELEHUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    )
    name = f"telehub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        service_absent(
            f"PostgreSQL not reachable at {base.render_as_string()}: {exc.__cause__ or exc}"
        )
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_schema(url: str) -> None:
    """Drop everything in the PostgreSQL database at *url* (between tests sharing it)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def nats_url() -> str:
    """URL of the NATS server (with JetStream) the bus tests use.

    Skips when nothing listens there, unless TELEHUB_REQUIRE_SERVICES=1 (CI).
    Tests keep to streams of their own (unique tenant names) and delete them.
    """
    url = os.environ.get("TELEHUB_TEST_NATS_URL", "nats://127.0.0.1:4222")
    host, _, port = url.removeprefix("nats://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        service_absent(f"NATS not reachable at {url}: {exc}")
    return url


# ---------------------------------------------------------------- a cloud on loopback
# The end-to-end tests (tests/test_*.py, tests/vehicle_agent/test_uplink.py) run the
# real gateway on 127.0.0.1:0 with one SQLite tenant store in tmp_path.

E2E_TENANT = "acme"
E2E_SECRET = SecretStr("e2e-secret-" + "s" * 32)


@pytest.fixture
def settings(tmp_path: Path) -> CloudSettings:
    return CloudSettings(
        listen="127.0.0.1:0",
        data_dir=tmp_path,
        tenants={E2E_TENANT: TenantSettings(token_secret=E2E_SECRET)},
    )


@pytest.fixture
def registry(settings: CloudSettings) -> Iterator[TenantRegistry]:
    with TenantRegistry(settings) as reg:
        yield reg


@pytest.fixture
async def gateway(
    settings: CloudSettings, registry: TenantRegistry
) -> AsyncIterator[GatewayServer]:
    server = await start_gateway(settings, registry)
    yield server
    await server.stop(0)
    assert server.stopped
