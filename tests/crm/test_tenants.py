"""Two automakers on one CRM never see each other's dealers, customers or vehicles."""

from __future__ import annotations

from fastapi.testclient import TestClient

from crm.store import CrmStores
from tests.crm.conftest import World, admin_key, bearer, make_world


def test_two_tenants_never_see_each_others_records(
    client: TestClient, stores: CrmStores, world: World
) -> None:
    globex_admin = bearer(admin_key(stores, "globex"))
    globex = make_world(client, globex_admin, code="G1", vin="1G1ZZZ1JZXW000009")
    for path, key in (("/v1/dealers", "code"), ("/v1/customers", "email"),
                      ("/v1/vehicles", "vin")):  # fmt: skip
        acme_items = client.get(path, headers=world.admin).json()["items"]
        globex_items = client.get(path, headers=globex_admin).json()["items"]
        assert len(acme_items) == len(globex_items) == 1
        assert acme_items[0][key] != globex_items[0][key]
    # Same row ids in both stores: the id alone never crosses the tenant line.
    assert globex.vehicle_id == world.vehicle_id
    assert (
        client.get(f"/v1/vehicles/{world.vehicle_id}", headers=globex_admin).json()["vin"]
        == "1G1ZZZ1JZXW000009"
    )
    health = client.get("/v1/vehicles/health", headers=globex.dealer).json()["items"]
    assert [item["vin"] for item in health] == ["1G1ZZZ1JZXW000009"]
    audit = client.get("/v1/audit", headers=globex_admin, params={"limit": 200}).json()["items"]
    assert {row["principal"] for row in audit} <= {
        globex_admin["Authorization"].split(".")[1],
        globex.dealer["Authorization"].split(".")[1],
    }


def test_a_key_presented_under_another_tenant_is_refused(
    client: TestClient, stores: CrmStores, world: World
) -> None:
    acme_key = world.admin["Authorization"].removeprefix("Bearer ")
    forged = acme_key.replace("thk_acme.", "thk_globex.", 1)
    assert client.get("/v1/dealers", headers=bearer(forged)).status_code == 401
    unknown = acme_key.replace("thk_acme.", "thk_initech.", 1)
    assert client.get("/v1/dealers", headers=bearer(unknown)).status_code == 401
