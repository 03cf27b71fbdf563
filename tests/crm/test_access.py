"""Grants, consent and audit through the real app: who sees what, and that every read
(denied ones too) leaves an audit row."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.crm.conftest import World, bearer, created, make_world


def audit_rows(world: World, **params: Any) -> list[dict[str, Any]]:
    reply = world.get("/v1/audit", world.admin, limit=200, **params)
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


def test_a_dealer_without_a_grant_gets_403_and_an_audit_row(
    client: TestClient, world: World
) -> None:
    other = make_world(client, world.admin, code="D2", vin="WVWZZZ1JZXW000002", telemetry_id=None)
    reply = world.get(f"/v1/vehicles/{other.vehicle_id}/data", world.dealer)
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "forbidden"
    denied = audit_rows(world, result="denied", dealer_id=world.dealer_id)
    assert [(r["resource"], r["status"]) for r in denied] == [
        (f"/v1/vehicles/{other.vehicle_id}/data", 403)
    ]
    # An unknown vehicle looks the same to a dealer as one it has no grant on.
    assert world.get("/v1/vehicles/999/data", world.dealer).status_code == 403


def test_a_granted_dealer_reads_only_health_faults_mileage_and_service(world: World) -> None:
    reply = world.get(f"/v1/vehicles/{world.vehicle_id}/data", world.dealer)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["fields"] == ["faults", "health", "mileage", "service"]
    assert set(body) == {"id", "vin", "model", "year", "fields", "health", "faults",
                         "mileage_km", "service"}  # fmt: skip
    allowed = audit_rows(world, result="allowed", dealer_id=world.dealer_id)
    assert allowed[-1]["purpose"] == "after_sales,diagnostics"


def test_consent_withdrawal_ends_access_on_the_next_request(world: World) -> None:
    path = f"/v1/vehicles/{world.vehicle_id}/data"
    assert world.get(path, world.dealer).json()["fields"] == [
        "faults",
        "health",
        "mileage",
        "service",
    ]
    assert len(world.get("/v1/vehicles/health", world.dealer).json()["items"]) == 1
    assert world.post(f"/v1/consents/{world.consent_id}/withdraw", world.admin).status_code == 200
    # Diagnostics withdrawn: health and faults go at once, after-sales fields stay.
    assert world.get(path, world.dealer).json()["fields"] == ["mileage", "service"]
    assert world.get("/v1/vehicles/health", world.dealer).json()["items"] == []


def test_an_ended_grant_ends_access_on_the_next_request(world: World) -> None:
    path = f"/v1/vehicles/{world.vehicle_id}/data"
    assert world.get(path, world.dealer).status_code == 200
    assert world.post(f"/v1/grants/{world.grant_id}/end", world.admin).status_code == 200
    assert world.get(path, world.dealer).status_code == 403
    assert world.get("/v1/vehicles/health", world.dealer).json()["items"] == []


def test_a_grant_for_another_dealer_or_in_the_future_gives_nothing(
    client: TestClient, world: World
) -> None:
    other = make_world(client, world.admin, code="D2", vin="WVWZZZ1JZXW000002", telemetry_id=None)
    created(world.post("/v1/grants", world.admin, {
        "dealer_id": other.dealer_id, "vehicle_id": world.vehicle_id,
        "purposes": ["diagnostics"], "fields": ["health"], "valid_from": "2199-01-01T00:00:00Z",
    }))  # fmt: skip
    assert world.get(f"/v1/vehicles/{world.vehicle_id}/data", other.dealer).status_code == 403


def test_dealers_cannot_reach_personal_records_or_the_audit_log(world: World) -> None:
    for path in ("/v1/customers", f"/v1/customers/{world.customer_id}", "/v1/audit",
                 "/v1/vehicles", f"/v1/vehicles/{world.vehicle_id}/parties"):  # fmt: skip
        reply = world.get(path, world.dealer)
        assert reply.status_code == 403, path
    denied = audit_rows(world, result="denied")
    assert len(denied) == 5


def test_no_anonymous_route_but_health(client: TestClient, world: World) -> None:
    assert client.get("/health").status_code == 200
    schema = client.get("/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method in methods:
            if path == "/health" or path == "/v1/oauth/token":
                continue
            concrete = re.sub(r"\{[a-z_]+\}", "1", path)
            reply = client.request(method.upper(), concrete)
            assert reply.status_code == 401, (method, path, reply.status_code)
    reply = client.get(
        "/v1/dealers", headers=bearer("thk_acme.0123456789abcdef.wrong-secret-000000000")
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unauthenticated"


def test_a_revoked_key_is_refused_on_its_next_request(world: World) -> None:
    key = created(world.post("/v1/api-keys", world.admin, {
        "role": "dealer", "dealer_id": world.dealer_id, "label": "x"}))  # fmt: skip
    headers = bearer(key["key"])
    assert world.get("/v1/leads", headers).status_code == 200
    assert (
        world.client.delete(f"/v1/api-keys/{key['key_id']}", headers=world.admin).status_code == 204
    )
    assert world.get("/v1/leads", headers).status_code == 401


def test_client_credentials_token_acts_as_its_dealer(world: World) -> None:
    key = created(world.post("/v1/api-keys", world.admin, {
        "role": "dealer", "dealer_id": world.dealer_id, "label": "oauth"}))  # fmt: skip
    secret = key["key"].rsplit(".", 1)[1]
    reply = world.client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": f"acme.{key['key_id']}",
        "client_secret": secret})  # fmt: skip
    assert reply.status_code == 200, reply.text
    token = bearer(reply.json()["access_token"])
    assert world.get(f"/v1/vehicles/{world.vehicle_id}/data", token).status_code == 200
    assert world.get("/v1/customers", token).status_code == 403
    wrong = world.client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": f"acme.{key['key_id']}",
        "client_secret": "x" * 43})  # fmt: skip
    assert wrong.status_code == 401
