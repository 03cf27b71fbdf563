"""Tenants are isolated: each one's rows land only in its own database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import create_engine, func, select

from cloud.auth import issue_token
from cloud.config import CloudSettings, TenantSettings
from cloud.store import TenantRegistry
from cloud.store.models import Sample, Vehicle
from tests.cloud.conftest import SECRET_ACME, SECRET_GLOBEX, make_settings
from tests.cloud.messages import batch, exchange, hello, samples_for
from tests.conftest import fresh_postgres_database

if TYPE_CHECKING:
    from telehub.v1.telemetry_pb2_grpc import TelemetryGatewayAsyncStub as Stub

CAR_A = "ACME-CAR-A"
CAR_B = "GLOBEX-CAR-B"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CloudSettings]:
    """Two tenants, each in a database of its own: SQLite files, or two PostgreSQL databases."""
    if request.param == "sqlite":
        yield make_settings(tmp_path / "data")
        return
    with fresh_postgres_database() as acme, fresh_postgres_database() as globex:
        yield make_settings(
            tmp_path / "data",
            tenants={
                "acme": TenantSettings(token_secret=SECRET_ACME, database_url=acme),
                "globex": TenantSettings(token_secret=SECRET_GLOBEX, database_url=globex),
            },
        )


def _rows(url: str) -> tuple[int, list[str]]:
    """Samples and vehicle ids in the database at ``url``, read with a separate engine."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            samples = conn.execute(select(func.count()).select_from(Sample)).scalar_one()
            vehicles = list(conn.execute(select(Vehicle.vehicle_id)).scalars())
    finally:
        engine.dispose()
    return samples, vehicles


async def test_each_tenant_writes_only_its_own_database(
    stub: Stub, registry: TenantRegistry, settings: CloudSettings
) -> None:
    registry.store("acme").enroll_vehicle(CAR_A)
    registry.store("globex").enroll_vehicle(CAR_B)
    assert settings.database_url("acme") != settings.database_url("globex")

    token_a = issue_token("acme", CAR_A, SECRET_ACME)
    outcome = await exchange(stub, [hello(CAR_A), batch(1, samples_for(1))], token=token_a)
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.replies[0].welcome.tenant == "acme"

    acme_samples, acme_vehicles = _rows(settings.database_url("acme"))
    globex_samples, globex_vehicles = _rows(settings.database_url("globex"))
    assert acme_samples == 30
    assert globex_samples == 0
    assert CAR_B not in acme_vehicles
    assert CAR_A not in globex_vehicles


async def test_a_tenants_key_cannot_speak_for_another_tenants_vehicle(
    stub: Stub, registry: TenantRegistry, settings: CloudSettings
) -> None:
    registry.store("globex").enroll_vehicle(CAR_B)
    # Claims globex, signed by acme: refused before anything is read.
    forged = issue_token("globex", CAR_B, SECRET_ACME)
    outcome = await exchange(stub, [hello(CAR_B), batch(1, samples_for(1))], token=forged)
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED
    assert "bad token signature for tenant 'globex'" in outcome.details

    # Signed by acme as acme: globex's vehicle simply does not exist in acme.
    as_acme = issue_token("acme", CAR_B, SECRET_ACME)
    outcome = await exchange(stub, [hello(CAR_B), batch(1, samples_for(1))], token=as_acme)
    assert outcome.code == grpc.StatusCode.NOT_FOUND
    assert f"vehicle '{CAR_B}' is not enrolled in tenant 'acme'" in outcome.details

    assert _rows(settings.database_url("globex"))[0] == 0
    assert _rows(settings.database_url("acme"))[0] == 0

    genuine = issue_token("globex", CAR_B, SECRET_GLOBEX)
    outcome = await exchange(stub, [hello(CAR_B), batch(1, samples_for(1))], token=genuine)
    assert outcome.code == grpc.StatusCode.OK
    assert _rows(settings.database_url("globex"))[0] == 30
    assert _rows(settings.database_url("acme"))[0] == 0
