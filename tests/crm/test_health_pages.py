"""The dealers' health list on PostgreSQL's direct path (``crm.store.health_json``): the
same answers as the SQLAlchemy path, its audit row committed with the read, a lost
connection a 503 the next request recovers from, its pool closed with the app."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from cloud.rules.events import HealthReason
from cloud.store.base import now, table
from cloud.store.models import HealthRow, Vehicle
from crm.api import health_pages
from crm.api.app import create_app
from crm.api.health_pages import HealthPages
from crm.api.schemas import HealthReasonPublic
from crm.config import CrmSettings
from crm.store import CrmStore, CrmStores
from crm.store.access import HealthPageAsk
from crm.store.base import now_us
from crm.store.tables import audit_log
from tests.conftest import empty_schema
from tests.crm.conftest import CRM_SECRET, make_world


@pytest.fixture
def acme_url(postgres_url: str) -> Iterator[str]:
    """The first tenant on PostgreSQL only: the direct path is PostgreSQL's."""
    yield postgres_url
    # Whatever the test did, no connection of a health pool outlives its app.
    assert _health_backends(postgres_url) == []
    empty_schema(postgres_url)


def _audit_row(principal: str, dealer_id: int | None, at_us: int) -> dict[str, Any]:
    return {
        "at_us": at_us, "principal": principal, "role": "dealer" if dealer_id else "admin",
        "dealer_id": dealer_id, "purpose": "diagnostics", "action": "GET /v1/vehicles/health",
        "resource": "/v1/vehicles/health", "result": "allowed", "status": 200,
    }  # fmt: skip


def _fill(store: CrmStore) -> tuple[list[int], int]:
    """Two dealers and 64 vehicles over every case of the access rule, some without
    telemetry, some with a health score whose reasons carry quotes and accents."""
    dealers = [store.create_dealer(f"D{n}", f"Dealer {n}", [])["id"] for n in (1, 2)]
    customer = store.create_customer({"name": "c", "email": "c@x.y", "phone": None})["id"]
    t = now_us()
    rng = random.Random(5)
    grants = [None, (0, t - 10, None), (0, t - 10, t - 1), (1, t - 10, None), (0, t + 10**9, None)]
    consents = [None, (None, False), (0, False), (1, False), (None, True)]
    telemetry: list[str] = []
    for number, (g, c) in enumerate(itertools.product(grants, consents)):
        telemetry_id = f"car-{number}" if number % 3 else None
        vehicle = store.create_vehicle({"vin": f"V{number:016d}", "telemetry_id": telemetry_id,
                                        "model": 'Model "S" ü', "year": 2020})["id"]  # fmt: skip
        if telemetry_id is not None:
            telemetry.append(telemetry_id)
        if g is not None:
            fields = ["health"] if number % 2 else ["health", "mileage"]
            store.create_grant({"dealer_id": dealers[g[0]], "vehicle_id": vehicle,
                                "purposes": ["diagnostics"], "fields": fields,
                                "valid_from_us": g[1], "valid_to_us": g[2]})  # fmt: skip
        if c is not None:
            row = store.create_consent({"vehicle_id": vehicle, "customer_id": customer,
                                        "purpose": "diagnostics",
                                        "dealer_id": None if c[0] is None else dealers[c[0]],
                                        "valid_from_us": t - 10, "valid_to_us": None,
                                        "source": "app"})  # fmt: skip
            if c[1]:
                store.withdraw_consent(row["id"])
    store.telemetry.enroll_vehicles(telemetry)
    with store.engine.begin() as conn:
        pks = dict(conn.execute(select(Vehicle.vehicle_id, Vehicle.id)).all())
        # Every other enrolled vehicle has a score: the others are listed with none.
        conn.execute(insert(table(HealthRow)), [
            {"vehicle_id": pks[v], "score": rng.randint(0, 100), "as_of_us": t,
             "reasons": [{"code": "fault", "points": 12.5, "text": f'P030{n} "misfire" é'}],
             "updated_at": now()}
            for n, v in enumerate(telemetry) if n % 2 == 0
        ])  # fmt: skip
    return dealers, len(telemetry)


@pytest.fixture
def pg_store(stores: CrmStores) -> CrmStore:
    return stores.store("acme")


@pytest.mark.postgres
async def test_the_direct_path_answers_what_the_sqlalchemy_path_answers(
    pg_store: CrmStore,
) -> None:
    dealers, _ = _fill(pg_store)
    direct = HealthPages(CrmSettings(token_secret=CRM_SECRET, health_pool_size=2))
    reference = HealthPages(CrmSettings(token_secret=CRM_SECRET, health_pool_size=0))
    compared = 0
    try:
        for dealer, limit in itertools.product([*dealers, None], [1, 7, 50, 200]):
            after: int | None = None
            while True:
                at = now_us()
                ask = HealthPageAsk(dealer, after, limit, at, _audit_row("k", dealer, at))
                pages = [
                    json.loads(await paths.page("acme", pg_store, ask))
                    for paths in (direct, reference)
                ]
                assert pages[0] == pages[1], (dealer, limit, after)
                compared += len(pages[0]["items"])
                after = pages[0]["next_after"]
                if after is None:
                    break
    finally:
        await direct.close()
    # Each dealer sees its one live grant's vehicles with an all-dealer or its own consent
    # (2 of the 5 x 5 cases each, for each of 4 limits); the administrator sees all 25.
    assert compared == 4 * (2 + 2 + 25)


async def _first_page(store: CrmStore, dealer: int, at: int) -> bytes:
    """The dealer's first page on a fresh ``HealthPages``, closed afterwards."""
    pages = HealthPages(CrmSettings(token_secret=CRM_SECRET))
    try:
        ask = HealthPageAsk(dealer, None, 10, at, _audit_row("key-1", dealer, at))
        return await pages.page("acme", store, ask)
    finally:
        await pages.close()


@pytest.mark.postgres
async def test_the_page_and_its_audit_row_commit_together(pg_store: CrmStore) -> None:
    dealers, _ = _fill(pg_store)
    at = now_us()
    body = await _first_page(pg_store, dealers[0], at)
    assert len(json.loads(body)["items"]) == 2
    with pg_store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(audit_log))]
    assert [{k: v for k, v in row.items() if k != "id"} for row in rows] == [
        _audit_row("key-1", dealers[0], at)
    ]


def _health_backends(url: str) -> list[int]:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'telehub-crm-health-%%'"
            " AND datname = current_database()"
        ).fetchall()
    return [row[0] for row in rows]


def _end_backends(url: str, pids: list[int]) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.postgres
def test_a_lost_connection_is_a_503_and_the_next_requests_are_served(
    client: TestClient, admin: dict[str, str], acme_url: str
) -> None:
    world = make_world(client, admin)
    assert world.get("/v1/vehicles/health", world.dealer).status_code == 200
    pids = _health_backends(acme_url)
    assert pids, "the direct path's pool holds connections"
    _end_backends(acme_url, pids)  # as a restarted server would
    failed = world.get("/v1/vehicles/health", world.dealer)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "store_unavailable"
    # Recorded as every failed route is: nothing was read.
    errors = world.get("/v1/audit", admin, result="error", dealer_id=world.dealer_id).json()
    assert [(row["resource"], row["status"]) for row in errors["items"]] == [
        ("/v1/vehicles/health", 503)
    ]
    # The failure had the idle connections checked: the next requests are served.
    statuses: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and statuses[-3:] != [200, 200, 200]:
        statuses.append(world.get("/v1/vehicles/health", world.dealer).status_code)
    assert statuses[-3:] == [200, 200, 200]
    assert statuses.count(503) <= 1, statuses


@pytest.mark.postgres
def test_the_app_closes_its_pools_when_it_stops(
    stores: CrmStores, admin: dict[str, str], acme_url: str, crm_settings: CrmSettings
) -> None:
    with TestClient(create_app(crm_settings, stores, deliver_webhooks=False)) as client:
        world = make_world(client, admin)
        assert world.get("/v1/vehicles/health", world.dealer).status_code == 200
        assert _health_backends(acme_url)
    assert _health_backends(acme_url) == []


def test_health_reasons_carry_only_the_fields_the_dealer_schema_publishes() -> None:
    # The direct path passes the stored reasons through as they are: what the cloud
    # stores (HealthReason) must be exactly what a dealer may see (HealthReasonPublic).
    stored = {field.name for field in dataclasses.fields(HealthReason)}
    assert stored == set(HealthReasonPublic.model_fields)


@pytest.mark.postgres
async def test_without_psycopg_pool_the_list_is_served_on_the_sqlalchemy_path(
    pg_store: CrmStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dealers, _ = _fill(pg_store)
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import psycopg_pool fails
    health_pages._pool_installed.cache_clear()
    try:
        body = await _first_page(pg_store, dealers[0], now_us())
    finally:
        health_pages._pool_installed.cache_clear()
    assert len(json.loads(body)["items"]) == 2
    assert body.startswith(b'{"items":[{"id":')  # pydantic's serialisation, not PostgreSQL's
    assert "psycopg-pool is not installed" in caplog.text
