"""The service loop: a rule event opens a lead at the owner's dealer (when consent allows),
the dealer proposes slots, the booking becomes a repair order, closing it closes the
lead, resets the cloud's maintenance counter and enters the service history."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cloud.rules.events import Event, EventKind, Severity, event_id
from crm.leads import LeadService
from crm.store import CrmStores, LeadOutcome
from tests.crm.conftest import World, created, soon


def fault(code: str = "P0301", ts_us: int = 1_000, vehicle: str = "car-1") -> Event:
    return Event(
        event_id(vehicle, EventKind.FAULT_SET, ts_us, code), EventKind.FAULT_SET, vehicle,
        ts_us, Severity.WARNING, {"code": code, "protocol": "uds", "bus": "pt", "source": 1},
    )  # fmt: skip


def maintenance(ts_us: int = 2_000) -> Event:
    return Event(
        event_id("car-1", EventKind.MAINTENANCE_DUE, ts_us, "x"), EventKind.MAINTENANCE_DUE,
        "car-1", ts_us, Severity.WARNING, {"reason": "distance", "odometer_km": 15_012.5},
    )  # fmt: skip


def test_a_fault_opens_one_lead_and_the_same_event_again_changes_nothing(
    stores: CrmStores, world: World
) -> None:
    leads = LeadService(stores)
    first = leads.on_event("acme", fault())
    assert first.outcome == LeadOutcome.OPENED
    assert first.lead_id is not None
    assert leads.on_event("acme", fault()) == first
    # Another event while the lead is open joins it.
    assert leads.on_event("acme", maintenance()).outcome == LeadOutcome.MERGED
    listed = world.get("/v1/leads", world.dealer).json()["items"]
    assert [(lead["id"], lead["state"], lead["reason"]) for lead in listed] == [
        (first.lead_id, "open", "fault code P0301 set (warning)")
    ]
    # The maintenance event carried the odometer: the dealer's mileage follows it.
    data = world.get(f"/v1/vehicles/{world.vehicle_id}/data", world.dealer).json()
    assert data["mileage_km"] == 15_012.5
    assert data["service"]["open_lead_id"] == first.lead_id


def test_no_lead_without_consent_a_dealer_or_a_known_vehicle(
    stores: CrmStores, world: World
) -> None:
    leads = LeadService(stores)
    assert leads.on_event("acme", fault(vehicle="car-unknown")).outcome == LeadOutcome.NO_VEHICLE
    after_sales = world.get("/v1/consents", world.admin, purpose="after_sales").json()["items"]
    world.post(f"/v1/consents/{after_sales[0]['id']}/withdraw", world.admin)
    assert leads.on_event("acme", fault()).outcome == LeadOutcome.NO_CONSENT
    assert leads.on_event("acme", fault(code="P0420")).outcome == LeadOutcome.NO_CONSENT
    assert world.get("/v1/leads", world.admin).json()["items"] == []
    ignored = Event("x" * 32, EventKind.LOW_FUEL, "car-1", 5, Severity.INFO)
    assert leads.on_event("acme", ignored).outcome == "ignored"


def walk_to_repair_order(world: World, lead_id: int) -> dict[str, Any]:
    slots = world.post(f"/v1/leads/{lead_id}/slots", world.dealer, {"slots": [
        {"start": soon(3600), "end": soon(7200)}, {"start": soon(7200), "end": soon(9000)},
    ]})  # fmt: skip
    assert slots.status_code == 201, slots.text
    chosen = slots.json()[1]["id"]
    booked = world.post(f"/v1/appointments/{chosen}/book", world.admin)
    assert booked.status_code == 200
    assert booked.json()["state"] == "booked"
    states = [a["state"] for a in world.get(f"/v1/leads/{lead_id}/appointments",
                                            world.dealer).json()]  # fmt: skip
    assert states == ["declined", "booked"]
    assert world.post(f"/v1/appointments/{chosen}/book", world.admin).status_code == 409
    return created(world.post(f"/v1/appointments/{chosen}/repair-order", world.dealer,
                              {"concern": "misfire on cylinder 1"}))  # fmt: skip


def test_the_loop_from_event_to_closed_repair_order(
    client: TestClient, stores: CrmStores, world: World
) -> None:
    telemetry = stores.store("acme").telemetry
    telemetry.enroll_vehicle("car-1")
    lead_id = LeadService(stores).on_event("acme", fault()).lead_id
    assert lead_id is not None
    order = walk_to_repair_order(world, lead_id)
    path = f"/v1/repair-orders/{order['id']}"
    etag = world.get(path, world.dealer).headers["ETag"]
    assert etag == '"1"'
    update = {"cause": "worn plug", "correction": "replaced plug",
              "parts": [{"number": "101-905", "description": "spark plug", "quantity": 4}],
              "labour_hours": 1.5, "mileage_km": 15_100.0}  # fmt: skip
    assert client.patch(path, json=update, headers=world.dealer).status_code == 428
    changed = client.patch(path, json=update, headers={**world.dealer, "If-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == '"2"'
    # A racing writer that read version 1 loses.
    stale = client.patch(path, json={"cause": "x"}, headers={**world.dealer, "If-Match": etag})
    assert stale.status_code == 412
    closed = client.post(f"{path}/close", headers={**world.dealer, "If-Match": '"2"'})
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "closed"
    assert world.get(f"/v1/leads/{lead_id}", world.dealer).json()["state"] == "closed"
    history = world.get(f"/v1/vehicles/{world.vehicle_id}/service-history", world.dealer).json()
    assert [(h["id"], h["cause"], h["mileage_km"]) for h in history] == [
        (order["id"], "worn plug", 15_100.0)
    ]
    record = telemetry.service_record("car-1")
    assert record.model == "ID.4"
    assert record.odometer_km == 15_100.0
    assert record.serviced_at_us is not None
    # Closed: the next fault opens a new lead.
    assert LeadService(stores).on_event("acme", fault(code="P0420")).outcome == "opened"


def test_another_dealer_cannot_touch_the_lead(client: TestClient, stores: CrmStores,
                                              world: World) -> None:  # fmt: skip
    from tests.crm.conftest import make_world

    other = make_world(client, world.admin, code="D2", vin="WVWZZZ1JZXW000002", telemetry_id=None)
    lead_id = LeadService(stores).on_event("acme", fault()).lead_id
    assert world.get(f"/v1/leads/{lead_id}", other.dealer).status_code == 404
    reply = world.post(f"/v1/leads/{lead_id}/slots", other.dealer,
                       {"slots": [{"start": soon(60), "end": soon(120)}]})  # fmt: skip
    assert reply.status_code == 404
    assert world.get("/v1/leads", other.dealer).json()["items"] == []
    slots = world.post(f"/v1/leads/{lead_id}/slots", world.dealer,
                       {"slots": [{"start": soon(60), "end": soon(120)}]}).json()  # fmt: skip
    stolen = world.post(f"/v1/appointments/{slots[0]['id']}/book", other.dealer)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["message"] == f"appointment {slots[0]['id']} does not exist"


def test_recall_status_moves_forward_with_if_match(client: TestClient, world: World) -> None:
    recall = created(world.post("/v1/recalls", world.admin, {
        "code": "24V-123", "title": "Brake hose", "vins": ["WVWZZZ1JZXW000001",
                                                           "WVWZZZ1JZXW000077"]}))  # fmt: skip
    path = f"/v1/recalls/{recall['id']}/vehicles"
    # The dealer sees only the recalled vehicle it holds a grant on.
    mine = world.get(path, world.dealer).json()
    assert [(v["vin"], v["status"]) for v in mine] == [("WVWZZZ1JZXW000001", "open")]
    assert len(world.get(path, world.admin).json()) == 2
    target = f"{path}/WVWZZZ1JZXW000001"
    for status, version in (("notified", 1), ("booked", 2), ("done", 3)):
        reply = client.patch(target, json={"status": status},
                             headers={**world.dealer, "If-Match": f'"{version}"'})  # fmt: skip
        assert reply.status_code == 200, reply.text
    back = client.patch(target, json={"status": "notified"},
                        headers={**world.dealer, "If-Match": '"4"'})  # fmt: skip
    assert back.status_code == 409
    other = client.patch(f"{path}/WVWZZZ1JZXW000077", json={"status": "notified"},
                         headers={**world.dealer, "If-Match": '"1"'})  # fmt: skip
    assert other.status_code == 404


def test_maintenance_reminders_from_the_model_schedule(
    client: TestClient, stores: CrmStores, world: World
) -> None:
    path = "/v1/maintenance-schedules/ID.4"
    body = {"interval_km": 15_000.0, "interval_days": 3650, "remind_before_km": 500.0}
    assert client.put(path, json=body, headers=world.dealer).status_code == 403
    created_schedule = client.put(path, json=body, headers=world.admin)
    assert created_schedule.status_code == 200
    assert created_schedule.headers["ETag"] == '"1"'
    assert client.put(path, json=body, headers=world.admin).status_code == 409
    stale = client.put(path, json=body, headers={**world.admin, "If-Match": '"7"'})
    assert stale.status_code == 412
    # No mileage yet: nothing due.
    assert world.get("/v1/reminders", world.dealer).json()["items"] == []
    # Telemetry reports 15,012.5 km (a maintenance-due event carries the odometer).
    LeadService(stores).on_event("acme", maintenance())
    (reminder,) = world.get("/v1/reminders", world.dealer).json()["items"]
    assert (reminder["vin"], reminder["by"], reminder["due_km"], reminder["overdue"]) == (
        "WVWZZZ1JZXW000001", "distance", 15_000.0, True)  # fmt: skip
    # Without the service grant the dealer gets no reminder for the vehicle.
    assert world.post(f"/v1/grants/{world.grant_id}/end", world.admin).status_code == 200
    assert world.get("/v1/reminders", world.dealer).json()["items"] == []
    assert len(world.get("/v1/reminders", world.admin).json()["items"]) == 1
