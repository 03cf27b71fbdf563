"""The cloud-built context: a real SQLite tenant store, read-only, consent deciding precision."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from cloud.config import CloudSettings, TenantSettings
from cloud.domain import FaultCode, FaultState, Purpose, SampleColumns, SignalDef
from cloud.recommend.vehicle_state import StoreStates
from cloud.rules.state import ServiceRecord
from cloud.store import TenantRegistry
from tests.cloud.recommend.conftest import ACME_APP_KEY, ACME_KEY, GLOBEX_KEY, make_app
from tests.cloud.recommend.scenarios import HOME, MONDAY_2PM

VIN = "WVWZZZ1KZAW000042"
_SIGNALS = [
    SignalDef(index=0, bus="gnss", message="GnssPosition", name="Latitude", unit="deg"),
    SignalDef(index=1, bus="gnss", message="GnssPosition", name="Longitude", unit="deg"),
    SignalDef(index=2, bus="pt", message="Battery", name="SoC", unit="%"),
]
_RULES = (
    '{"signals": {"latitude": {"name": "Latitude", "unit": "deg"},'
    ' "longitude": {"name": "Longitude", "unit": "deg"},'
    ' "state_of_charge": {"name": "SoC", "unit": "%"}},'
    ' "fault_severity": {"P0A": "critical"}}'
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[TenantRegistry]:
    settings = CloudSettings(
        data_dir=tmp_path,
        tenants={"acme": TenantSettings(token_secret="t" * 40)},  # type: ignore[arg-type]
    )
    registry = TenantRegistry(settings)
    store = registry.store("acme")
    store.enroll_vehicle(VIN)
    mapping, _ = store.open_session(VIN, "test", 1, _SIGNALS)
    ids = [mapping.signal_ids[i] for i in range(3)]
    store.ingest(VIN, 1, SampleColumns(ids, [1_000_000] * 3, [HOME[0], HOME[1], 40.0]))
    store.store_fault_report(VIN, 1, [FaultCode("uds", "pt", 1, "P0A80", FaultState.SET, 1)])
    store.set_service_record(VIN, ServiceRecord(model="Volt"))
    yield registry
    registry.close()


@pytest.fixture
async def client(tmp_path: Path, registry: TenantRegistry) -> AsyncIterator[httpx.AsyncClient]:
    rules = tmp_path / "rules.json"
    rules.write_text(_RULES)
    states = StoreStates(registry, {"acme": rules, "globex": None})
    transport = httpx.ASGITransport(app=make_app(tmp_path, states))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def ask(client: httpx.AsyncClient, vehicle: str, key: str = ACME_KEY) -> httpx.Response:
    body = {"vehicle_id": vehicle, "local_time": MONDAY_2PM.isoformat(), "limit": 10}
    return await client.post("/v1/vehicles/recommendations", json=body, headers={"X-API-Key": key})


async def test_context_from_the_store_without_location_consent(
    client: httpx.AsyncClient, registry: TenantRegistry
) -> None:
    answer = await ask(client, VIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Default consent leaves location out: the position is coarsened.
    assert body["position_precision"] == "coarse"
    assert VIN not in answer.text
    assert len(body["token"]) == 64
    # The model's battery: 40% of 60 kWh at 18 kWh/100 km.
    assert body["range_km"] == pytest.approx(133.3)
    first = body["suggestions"][0]
    assert first["id"] == "svc-brand"
    assert any("P0A80 (critical)" in r["text"] for r in first["reasons"])
    assert Purpose.LOCATION not in registry.store("acme").consent(VIN).purposes


async def test_location_consent_gives_the_exact_position(
    client: httpx.AsyncClient, registry: TenantRegistry
) -> None:
    registry.store("acme").add_consent(VIN, [Purpose.LOCATION, Purpose.RECOMMENDATIONS])
    body = (await ask(client, VIN)).json()
    assert body["position_precision"] == "exact"
    assert not any("coarse" in note for note in body["notes"])


async def test_tokens_are_per_recipient(client: httpx.AsyncClient) -> None:
    head_unit = (await ask(client, VIN)).json()["token"]
    app = (await ask(client, VIN, ACME_APP_KEY)).json()["token"]
    assert head_unit != app
    assert head_unit == (await ask(client, VIN)).json()["token"]


async def test_unknown_or_foreign_vehicles_are_404(client: httpx.AsyncClient) -> None:
    assert (await ask(client, "NOPE")).status_code == 404
    # globex has no store of its own configured here; acme's vehicle is not its.
    foreign = await ask(client, VIN, GLOBEX_KEY)
    assert foreign.status_code == 404
    assert VIN not in foreign.text


async def test_no_recommendations_consent_reads_nothing(
    client: httpx.AsyncClient, registry: TenantRegistry
) -> None:
    registry.store("acme").add_consent(VIN, [Purpose.LOCATION, Purpose.DIAGNOSTICS])
    answer = await ask(client, VIN)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    assert "consented to recommendations" in answer.json()["message"]
