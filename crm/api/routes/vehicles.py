"""Vehicles: records and ownership (administrators), and what a dealer may see of them
(the health list, one vehicle's granted data, its service history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from crm.api.deps import (
    AfterQuery,
    AuditDep,
    CallerDep,
    LimitQuery,
    PageDep,
    PrincipalDep,
    StoreDep,
    VersionDep,
    audit_trail,
    etag,
    require_admin,
)
from crm.api.errors import ERROR_RESPONSES, status_of
from crm.api.schemas import (
    MAX_ID,
    PageOf,
    PartyCreate,
    PartyPublic,
    Text,
    VehicleCreate,
    VehicleData,
    VehicleHealth,
    VehiclePublic,
    VehicleUpdate,
    Vin,
    changes,
    times,
    to_us,
)
from crm.api.service_schemas import RepairOrderPublic
from crm.api.vehicle_access import vehicle_data, visible_fields
from crm.errors import CrmError
from crm.store.access import HealthPageAsk
from crm.store.base import now_us

router = APIRouter(prefix="/v1/vehicles", tags=["vehicles"], responses=ERROR_RESPONSES)
VehicleId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a vehicle")
def create_vehicle(
    body: VehicleCreate,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> VehiclePublic:
    require_admin(principal)
    if body.preferred_dealer_id is not None:
        store.dealer(body.preferred_dealer_id)
    row = store.create_vehicle({**body.model_dump(), "mileage_km": None})
    response.headers["ETag"] = etag(row["version"])
    return VehiclePublic.model_validate(row)


@router.get("", summary="List vehicles, filtered by VIN, model or year")
def list_vehicles(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    vin: Annotated[Vin | None, Query()] = None,
    model: Annotated[Text | None, Query()] = None,
    year: Annotated[int | None, Query(ge=1900, le=2200)] = None,
) -> PageOf[VehiclePublic]:
    require_admin(principal)
    result = store.vehicles(after=page.after, limit=page.limit, vin=vin, model=model, year=year)
    return PageOf[VehiclePublic](
        items=[VehiclePublic.model_validate(i) for i in result.items],
        next_after=result.next_after,
    )


@router.get(
    "/health",
    summary="The vehicles the caller may see, with health score, reasons and mileage",
    description="A dealer gets only vehicles with a grant of `health` for `diagnostics` in "
    "force and the owner's diagnostics consent in force, evaluated at this request.",
    response_model=PageOf[VehicleHealth],
)
async def health_list(
    request: Request,
    caller: CallerDep,
    after: AfterQuery = None,
    limit: LimitQuery = 50,
) -> Response:
    # The dealers' hottest read: one dependency for the caller (not three), and its
    # audit row committed with the read itself (crm.api.health_pages), not by AuditDep.
    principal = caller.principal
    trail = audit_trail(request, principal)
    trail.purpose = "diagnostics"
    at = now_us()
    audit = trail.row("allowed", 200, at_us=at)
    ask = HealthPageAsk(principal.dealer_id, after, limit, at, audit)
    services = caller.services
    try:
        body = await services.health.page(principal.tenant, caller.store, ask)
    except CrmError as exc:
        # Nothing was read or committed: recorded as AuditDep records a failed route.
        await services.audit.write(principal.tenant, trail.row("error", status_of(exc)))
        raise
    return Response(body, media_type="application/json")


@router.get("/{vehicle_id}", summary="Read a vehicle record")
def get_vehicle(
    vehicle_id: VehicleId,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> VehiclePublic:
    require_admin(principal)
    row = store.vehicle(vehicle_id)
    response.headers["ETag"] = etag(row["version"])
    return VehiclePublic.model_validate(row)


@router.patch("/{vehicle_id}", summary="Update a vehicle (If-Match: its ETag)")
def update_vehicle(
    vehicle_id: VehicleId,
    body: VehicleUpdate,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> VehiclePublic:
    require_admin(principal)
    values = changes(body, nullable=("preferred_dealer_id",))
    if values.get("preferred_dealer_id") is not None:
        store.dealer(values["preferred_dealer_id"])
    row = store.update_vehicle(vehicle_id, version, values)
    response.headers["ETag"] = etag(row["version"])
    return VehiclePublic.model_validate(row)


@router.get(
    "/{vehicle_id}/data",
    summary="What the caller may see of one vehicle: health, faults, mileage, service state",
    description="Only granted fields with consent in force; never positions or raw samples. "
    "A dealer without a grant gets 403 (and the denial is audited).",
)
def get_vehicle_data(
    vehicle_id: VehicleId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> VehicleData:
    fields = visible_fields(store, principal, vehicle_id, audit)
    return VehicleData.model_validate(vehicle_data(store, vehicle_id, fields))


@router.get("/{vehicle_id}/service-history", summary="Closed repair orders, newest first")
def service_history(
    vehicle_id: VehicleId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> list[RepairOrderPublic]:
    visible_fields(store, principal, vehicle_id, audit, wanted=frozenset({"service"}))
    return [
        RepairOrderPublic.model_validate(times(row, "opened", "closed"))
        for row in store.service_history(vehicle_id)
    ]


@router.post(
    "/{vehicle_id}/parties",
    status_code=status.HTTP_201_CREATED,
    summary="Add an owner (ending the previous owner's period) or a user",
)
def add_party(
    vehicle_id: VehicleId,
    body: PartyCreate,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
) -> PartyPublic:
    require_admin(principal)
    row = store.add_party(vehicle_id, body.customer_id, body.role, to_us(body.valid_from))
    return PartyPublic.model_validate(times(row, "valid_from", "valid_to"))


@router.get("/{vehicle_id}/parties", summary="Owners (the ownership history) and users")
def list_parties(
    vehicle_id: VehicleId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> list[PartyPublic]:
    require_admin(principal)
    return [
        PartyPublic.model_validate(times(row, "valid_from", "valid_to"))
        for row in store.parties(vehicle_id)
    ]
