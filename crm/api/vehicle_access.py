"""A dealer's view of one vehicle: the fields its grants and the owner's consent allow
now (``crm.domain.decide_access``), read from the CRM's records and the cloud's store.

Administrators of the automaker see every field. A denial raises ``Forbidden``
inside the route, so the audit trail records it with the purposes asked for.
"""

from __future__ import annotations

from typing import Any

from cloud.errors import StoreError, UnknownVehicle
from crm.api.deps import AuditTrail
from crm.api.schemas import from_us
from crm.auth import Principal
from crm.domain import DATA_FIELDS, FIELD_PURPOSE, LeadState, decide_access
from crm.errors import Forbidden, StoreUnavailable
from crm.store import CrmStore
from crm.store.base import now_us

__all__ = ["vehicle_data", "visible_fields"]


def visible_fields(
    store: CrmStore,
    principal: Principal,
    vehicle_id: int,
    audit: AuditTrail,
    wanted: frozenset[str] = DATA_FIELDS,
) -> frozenset[str]:
    """The fields of ``wanted`` the caller may read now; ``Forbidden`` when none."""
    audit.purpose = ",".join(sorted({FIELD_PURPOSE[name] for name in wanted}))
    if principal.is_admin:
        store.vehicle(vehicle_id)  # NotFound for an administrator: nothing to hide
        return wanted
    assert principal.dealer_id is not None
    grants, consents = store.access_terms(vehicle_id)
    decision = decide_access(principal.dealer_id, grants, consents, now_us(), wanted)
    if not decision.allowed:
        # An unknown vehicle and one without a grant look the same to a dealer.
        raise Forbidden(f"vehicle {vehicle_id}: {decision.reason}")
    return decision.fields


def vehicle_data(store: CrmStore, vehicle_id: int, fields: frozenset[str]) -> dict[str, Any]:
    """The vehicle's record with only ``fields`` filled in."""
    vehicle = store.vehicle(vehicle_id)
    data: dict[str, Any] = {
        "id": vehicle["id"],
        "vin": vehicle["vin"],
        "model": vehicle["model"],
        "year": vehicle["year"],
        "fields": sorted(fields),
    }
    telemetry_id = vehicle["telemetry_id"]
    try:
        if "health" in fields:
            score = None if telemetry_id is None else store.telemetry.health(telemetry_id)
            data["health"] = {
                **vehicle,
                "score": None if score is None else score.score,
                "reasons": [] if score is None else [
                    {"code": r.code, "points": r.points, "text": r.text} for r in score.reasons
                ],
            }  # fmt: skip
        if "faults" in fields:
            entries = [] if telemetry_id is None else store.telemetry.active_faults(telemetry_id)
            data["faults"] = [
                {
                    "code": e.fault.code,
                    "protocol": str(e.fault.protocol),
                    "source": e.fault.source,
                    "since": from_us(e.fault.ts_us),
                }
                for e in entries
            ]
    except UnknownVehicle:
        pass  # the car's agent was never enrolled: no telemetry to show yet
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from exc
    if "mileage" in fields:
        data["mileage_km"] = vehicle["mileage_km"]
    if "service" in fields:
        open_leads = [
            lead
            for lead in store.leads(
                dealer_id=None, state=None, vehicle_id=vehicle_id, after=None, limit=50
            ).items
            if LeadState(lead["state"]).is_open
        ]
        history = store.service_history(vehicle_id)
        data["service"] = {
            "open_lead_id": open_leads[0]["id"] if open_leads else None,
            "open_lead_state": open_leads[0]["state"] if open_leads else None,
            "last_service": from_us(history[0]["closed_us"]) if history else None,
        }
    return data
