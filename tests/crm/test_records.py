"""Records through the API: ownership history, several users, pagination and filters,
ETag/If-Match on updates, one error body for bad input."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.crm.conftest import World, created


def test_a_new_owner_ends_the_previous_ownership_and_users_add_up(world: World) -> None:
    second = created(world.post("/v1/customers", world.admin,
                                {"name": "Max", "email": "max@example.com"}))  # fmt: skip
    user = created(world.post("/v1/customers", world.admin,
                              {"name": "Kid", "email": "kid@example.com"}))  # fmt: skip
    path = f"/v1/vehicles/{world.vehicle_id}/parties"
    created(world.post(path, world.admin, {"customer_id": second["id"], "role": "owner",
                                           "valid_from": "2024-06-01T00:00:00Z"}))  # fmt: skip
    for customer in (user["id"], world.customer_id):
        body = {"customer_id": customer, "role": "user", "valid_from": "2024-07-01T00:00:00+02:00"}
        created(world.post(path, world.admin, body))
    parties = world.get(path, world.admin).json()
    owners = [(p["customer_id"], p["valid_to"]) for p in parties if p["role"] == "owner"]
    assert owners == [(world.customer_id, "2024-06-01T00:00:00Z"), (second["id"], None)]
    users = sorted(p["customer_id"] for p in parties if p["role"] == "user")
    assert users == sorted([user["id"], world.customer_id])


def test_lists_page_by_keyset_and_filter(client: TestClient, world: World) -> None:
    for n in range(5):
        created(world.post("/v1/vehicles", world.admin, {
            "vin": f"WVWZZZ1JZXW10000{n}", "model": "Golf" if n % 2 else "Polo", "year": 2020 + n,
        }))  # fmt: skip
    seen, after = [], None
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = world.get("/v1/vehicles", world.admin, **params).json()
        seen += [v["vin"] for v in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 6
    golfs = world.get("/v1/vehicles", world.admin, model="Golf").json()["items"]
    assert {v["vin"] for v in golfs} == {"WVWZZZ1JZXW100001", "WVWZZZ1JZXW100003"}
    assert world.get("/v1/vehicles", world.admin, year=2024).json()["items"][0]["year"] == 2024
    by_email = world.get("/v1/customers", world.admin, email="erika-D1@example.com").json()
    assert [c["id"] for c in by_email["items"]] == [world.customer_id]


def test_updates_need_the_current_etag(client: TestClient, world: World) -> None:
    path = f"/v1/customers/{world.customer_id}"
    etag = world.get(path, world.admin).headers["ETag"]
    no_match = client.patch(path, json={"phone": "+49 1"}, headers=world.admin)
    assert no_match.status_code == 428
    assert no_match.json()["error"]["code"] == "precondition_required"
    ok = client.patch(path, json={"phone": "+49 1"}, headers={**world.admin, "If-Match": etag})
    assert (ok.status_code, ok.json()["phone"], ok.headers["ETag"]) == (200, "+49 1", '"2"')
    lost = client.patch(path, json={"name": "E."}, headers={**world.admin, "If-Match": etag})
    assert lost.status_code == 412
    bad = client.patch(path, json={"name": "E."}, headers={**world.admin, "If-Match": "v2"})
    assert bad.status_code == 422
    # null clears the phone; it cannot clear the name.
    cleared = client.patch(path, json={"phone": None, "name": None},
                           headers={**world.admin, "If-Match": '"2"'})  # fmt: skip
    assert (cleared.json()["phone"], cleared.json()["name"]) == (None, "Erika")


def test_bad_input_is_a_4xx_with_the_error_body(client: TestClient, world: World) -> None:
    cases = [
        ("/v1/vehicles", {"vin": "SHORT", "model": "x", "year": 2020}, 422),
        ("/v1/vehicles", {"vin": "WVWZZZ1JZXW000001", "model": "x", "year": 2020}, 409),
        ("/v1/customers", {"name": "a\x00b", "email": "x@y.z"}, 422),
        ("/v1/grants", {"dealer_id": world.dealer_id, "vehicle_id": world.vehicle_id,
                        "purposes": ["diagnostics"], "fields": ["position"],
                        "valid_from": "2020-01-01T00:00:00Z"}, 422),
        ("/v1/grants", {"dealer_id": 999, "vehicle_id": world.vehicle_id,
                        "purposes": ["diagnostics"], "fields": ["health"],
                        "valid_from": "2020-01-01T00:00:00Z"}, 404),
        ("/v1/consents", {"vehicle_id": world.vehicle_id, "customer_id": world.customer_id,
                          "purpose": "location", "valid_from": "2020-01-01T00:00:00",
                          "source": "app"}, 422),
    ]  # fmt: skip
    for path, body, status in cases:
        reply = client.post(path, json=body, headers=world.admin)
        assert reply.status_code == status, (path, body, reply.text)
        assert set(reply.json()["error"]) == {"code", "message", "details"}
    garbage = client.post("/v1/dealers", content=b"{not json", headers={
        **world.admin, "Content-Type": "application/json"})  # fmt: skip
    assert garbage.status_code == 422
    assert client.get("/v1/nothing-here", headers=world.admin).json()["error"]["code"] == (
        "not_found"
    )
