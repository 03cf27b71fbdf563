"""The API through its ASGI app: auth and tenants, answers, 4xx for bad input, quiet logs."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from cloud.recommend.schemas import RecommendationsOut
from tests.cloud.recommend.conftest import ACME_APP_KEY, ACME_KEY, GLOBEX_KEY
from tests.cloud.recommend.scenarios import HOME, MONDAY_2PM

LOW_CHARGE: dict[str, Any] = {
    "token": "ab" * 16,
    "position": {"lat": HOME[0], "lon": HOME[1], "precision": "exact"},
    "energy": "electric",
    "level_pct": 10,
    "range_km": 30,
    "connectors": ["ccs"],
    "local_time": MONDAY_2PM.isoformat(),
    "limit": 10,
}


async def post(client: httpx.AsyncClient, body: object, key: str = ACME_KEY) -> httpx.Response:
    return await client.post("/v1/recommendations", json=body, headers={"X-API-Key": key})


async def test_low_charge_over_http(client: httpx.AsyncClient) -> None:
    answer = await post(client, LOW_CHARGE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The answer is encoded by hand for speed: it must be exactly the documented model.
    assert RecommendationsOut.model_validate(body).model_dump(mode="json") == body
    assert [s["id"] for s in body["suggestions"]] == ["chg-near-ccs", "chg-mid-ccs"]
    assert body["position_precision"] == "exact"
    assert body["token"] == LOW_CHARGE["token"]
    assert body["usable_range_km"] == pytest.approx(20.5)
    assert all(s["reasons"] and "ccs" in s["connectors"] for s in body["suggestions"])


async def test_range_is_estimated_from_the_model(client: httpx.AsyncClient) -> None:
    body = {**LOW_CHARGE, "range_km": None, "model": "Volt", "connectors": None}
    answer = (await post(client, body)).json()
    # 10% of 60 kWh at 18 kWh/100 km: 33.3 km; the model's connectors are CCS.
    assert answer["range_km"] == pytest.approx(33.3)
    assert any("estimated" in note for note in answer["notes"])
    assert all("ccs" in s["connectors"] for s in answer["suggestions"])


async def test_fault_puts_brand_service_first(client: httpx.AsyncClient) -> None:
    body = {
        **LOW_CHARGE,
        "energy": "fuel",
        "level_pct": 70,
        "range_km": None,
        "connectors": None,
        "faults": [{"code": "p0301", "severity": "critical"}],
    }
    first = (await post(client, body)).json()["suggestions"][0]
    assert first["id"] == "svc-brand"
    assert any("P0301" in reason["text"] for reason in first["reasons"])


async def test_without_location_consent_the_position_is_coarse(
    client: httpx.AsyncClient,
) -> None:
    answers = []
    for lat, lon in ((56.1312, 10.1561), (56.1088, 10.1934)):  # one 0.1° cell
        body = {**LOW_CHARGE, "position": {"lat": lat, "lon": lon}, "range_km": 60}
        answer = (await post(client, body)).json()
        assert answer["position_precision"] == "coarse"
        assert any("no location consent" in note for note in answer["notes"])
        answers.append([(s["id"], s["distance_km"]) for s in answer["suggestions"]])
    assert answers[0] == answers[1]
    assert answers[0]


async def test_same_input_same_order(client: httpx.AsyncClient) -> None:
    first = (await post(client, LOW_CHARGE)).json()
    for _ in range(3):
        assert (await post(client, LOW_CHARGE)).json() == first


async def test_every_route_but_health_needs_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    for key in (None, "wrong"):
        headers = {"X-API-Key": key} if key else {}
        answer = await client.post("/v1/recommendations", json=LOW_CHARGE, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert (await client.get("/v1/catalog", headers=headers)).status_code == 401


async def test_a_tenant_sees_only_its_own_catalog(client: httpx.AsyncClient) -> None:
    acme = (await client.get("/v1/catalog", headers={"X-API-Key": ACME_KEY})).json()
    globex = (await client.get("/v1/catalog", headers={"X-API-Key": GLOBEX_KEY})).json()
    assert acme["tenant"] == "acme"
    assert globex["tenant"] == "globex"
    assert acme["points_of_interest"]["charging"] == 6
    assert globex["points_of_interest"]["charging"] > 6
    acme_ids = {s["id"] for s in (await post(client, LOW_CHARGE)).json()["suggestions"]}
    globex_ids = {
        s["id"] for s in (await post(client, LOW_CHARGE, GLOBEX_KEY)).json()["suggestions"]
    }
    assert acme_ids
    assert globex_ids
    assert not acme_ids & globex_ids
    assert all(i.startswith("chg-") and not i.startswith("chg-near") for i in globex_ids)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (
            {**LOW_CHARGE, "position": {"lat": 95, "lon": 10}},
            "body.position.lat",
            "less than or equal to 90",
        ),
        ({**LOW_CHARGE, "level_pct": -1}, "body.level_pct", "greater than or equal to 0"),
        ({**LOW_CHARGE, "connectors": ["scart"]}, "body.connectors.0", "'ccs'"),
        ({**LOW_CHARGE, "limit": 0}, "body.limit", "greater than or equal to 1"),
        ({**LOW_CHARGE, "local_time": "2026-12-07T14:00:00"}, "body.local_time", "timezone"),
        ({**LOW_CHARGE, "vin": "WVW123"}, "body.vin", "Extra inputs"),
        ({**LOW_CHARGE, "token": "not-hex"}, "body.token", "pattern"),
        ({k: v for k, v in LOW_CHARGE.items() if k != "position"}, "body.position", "required"),
        ([1, 2], "body", "valid dictionary"),
    ],
)
async def test_bad_input_is_a_clear_422(
    client: httpx.AsyncClient, body: object, field: str, says: str
) -> None:
    answer = await post(client, body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"] == "invalid_request"
    assert field in error["message"]
    assert any(d["field"] == field and says in d["message"] for d in error["details"]), error


async def test_malformed_json_oversize_and_unknown_routes_are_4xx(
    client: httpx.AsyncClient,
) -> None:
    headers = {"X-API-Key": ACME_KEY, "Content-Type": "application/json"}
    broken = await client.post("/v1/recommendations", content=b'{"position": ', headers=headers)
    assert broken.status_code == 422
    assert "JSON" in broken.json()["message"]
    huge = await client.post("/v1/recommendations", content=b"x" * 100_000, headers=headers)
    assert huge.status_code == 413
    assert huge.json()["error"] == "too_large"
    missing = await client.get("/v1/nothing", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.get("/v1/recommendations", headers=headers)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_cloud_built_route_is_off_without_a_store(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/vehicles/recommendations", json={"vehicle_id": "V1"}, headers={"X-API-Key": ACME_KEY}
    )
    assert answer.status_code == 503
    assert answer.json()["error"] == "unavailable"


async def test_logs_hold_no_position_token_or_vehicle(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post(client, LOW_CHARGE)
    await post(client, {**LOW_CHARGE, "level_pct": 500})
    await post(client, LOW_CHARGE, key=ACME_APP_KEY)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /v1/recommendations 200" in text
    assert "POST /v1/recommendations 422" in text
    for secret in ("56.1", "10.19", LOW_CHARGE["token"], ACME_KEY, ACME_APP_KEY):
        assert secret not in text


async def test_openapi_documents_the_routes_with_examples(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"/v1/recommendations", "/v1/vehicles/recommendations", "/v1/catalog", "/health"} <= set(
        schema["paths"]
    )
    assert schema["components"]["schemas"]["ContextIn"]["examples"]
    assert "401" in schema["paths"]["/v1/recommendations"]["post"]["responses"]
