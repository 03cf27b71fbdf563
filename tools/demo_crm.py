"""The dealer CRM's part of ``telehub demo``: rule events from the replayed recordings
open service leads.

The automaker's records come first (a dealer with a service centre, an owner,
each demo vehicle with the owner's consent and a grant to the dealer); then
the rules run over every stored batch of each vehicle, and each new event goes
to the CRM's entry point ``LeadService.on_event``, as the event bus's consumer
does in a deployment. The summary lists the events by kind and the leads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from cloud.rules.worker import RulesWorker
from cloud.store import TenantRegistry
from cloud.store.models import Batch, Vehicle
from crm.leads import LeadService
from crm.store import CrmStores

__all__ = ["run_crm"]

_EVERY_DEALER = None
_FIELDS = ["health", "faults", "mileage", "service"]


def run_crm(registry: TenantRegistry, tenant: str, vehicle_ids: Sequence[str]) -> dict[str, Any]:
    """Records, rules and leads for ``vehicle_ids`` (already replayed); the CRM summary."""
    stores = CrmStores(registry)
    crm = stores.store(tenant)
    dealer = crm.create_dealer("DEMO-01", "Demo Motors Service", [
        {"name": "Workshop", "address": "1 Demo Street", "latitude": 56.1, "longitude": 10.2}
    ])  # fmt: skip
    owner = crm.create_customer({"name": "Demo Owner", "email": "owner@example.com"})
    for number, vehicle_id in enumerate(vehicle_ids):
        vehicle = crm.create_vehicle({
            "vin": f"DEMOVIN{number:010d}", "telemetry_id": vehicle_id, "model": "demo",
            "year": 2021, "preferred_dealer_id": dealer["id"],
        })  # fmt: skip
        for purpose in ("diagnostics", "after_sales"):
            crm.create_consent({
                "vehicle_id": vehicle["id"], "customer_id": owner["id"], "purpose": purpose,
                "dealer_id": _EVERY_DEALER, "valid_from_us": 0, "valid_to_us": None,
                "source": "demo",
            })  # fmt: skip
        crm.create_grant({
            "dealer_id": dealer["id"], "vehicle_id": vehicle["id"],
            "purposes": ["diagnostics", "after_sales"], "fields": _FIELDS,
            "valid_from_us": 0, "valid_to_us": None,
        })  # fmt: skip
    store = crm.telemetry
    worker, leads = RulesWorker({}), LeadService(stores)
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for vehicle_id in vehicle_ids:
        with store.engine.connect() as conn:
            sequences = conn.execute(
                select(Batch.sequence).join(Vehicle, Vehicle.id == Batch.vehicle_id)
                .where(Vehicle.vehicle_id == vehicle_id).order_by(Batch.sequence)
            ).scalars().all()  # fmt: skip
        for sequence in sequences:
            for event in worker.process_batch(store, vehicle_id, sequence, tenant=tenant):
                kinds[event.kind.value] += 1
                outcomes[leads.on_event(tenant, event).outcome] += 1
    page = crm.leads(dealer_id=None, state=None, vehicle_id=None, after=None, limit=50)
    vins = {v["id"]: v["telemetry_id"] for v in crm.vehicles(after=None, limit=50).items}
    return {
        "dealer": dealer["name"],
        "events": dict(sorted(kinds.items())),
        "event_outcomes": dict(sorted(outcomes.items())),
        "leads": [
            {
                "id": lead["id"],
                "vehicle_id": vins[lead["vehicle_id"]],
                "kind": lead["kind"],
                "reason": lead["reason"],
                "state": lead["state"],
            }
            for lead in page.items
        ],
    }
