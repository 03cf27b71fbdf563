"""The service loop: leads, appointment slots, bookings and repair orders.

A dealer acts only on its own leads (another dealer's are reported absent);
an administrator acts for the automaker (e.g. booking the slot the owner chose
in the brand's app).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, ServicesDep, StoreDep, VersionDep, etag
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import MAX_ID, Id, PageOf, changes, times, to_us
from crm.api.service_schemas import (
    AppointmentPublic,
    LeadPublic,
    RepairOrderCreate,
    RepairOrderPublic,
    RepairOrderUpdate,
    SlotsCreate,
)
from crm.domain import LeadState
from crm.workshop import close_repair_order

router = APIRouter(tags=["service"], responses=ERROR_RESPONSES)
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _lead(row: dict[str, object]) -> LeadPublic:
    return LeadPublic.model_validate(times(row, "opened", "closed"))


def _slot(row: dict[str, object]) -> AppointmentPublic:
    return AppointmentPublic.model_validate(times(row, "start", "end"))


def _order(row: dict[str, object], response: Response) -> RepairOrderPublic:
    response.headers["ETag"] = etag(int(str(row["version"])))
    return RepairOrderPublic.model_validate(times(row, "opened", "closed"))


@router.get("/v1/leads", summary="List leads, by state or vehicle")
def list_leads(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    state: Annotated[LeadState | None, Query()] = None,
    vehicle_id: Annotated[Id | None, Query()] = None,
) -> PageOf[LeadPublic]:
    result = store.leads(
        dealer_id=principal.dealer_id,
        state=None if state is None else state.value,
        vehicle_id=vehicle_id,
        after=page.after,
        limit=page.limit,
    )
    return PageOf[LeadPublic](items=[_lead(i) for i in result.items], next_after=result.next_after)


@router.get("/v1/leads/{lead_id}", summary="Read a lead")
def get_lead(
    lead_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> LeadPublic:
    return _lead(store.lead(lead_id, dealer_id=principal.dealer_id))


@router.post("/v1/leads/{lead_id}/cancel", summary="Cancel a lead that has no repair order")
def cancel_lead(
    lead_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> LeadPublic:
    return _lead(store.cancel_lead(lead_id, dealer_id=principal.dealer_id))


@router.post(
    "/v1/leads/{lead_id}/slots",
    status_code=status.HTTP_201_CREATED,
    summary="Propose appointment slots for a lead",
)
def propose_slots(
    lead_id: RowId, body: SlotsCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> list[AppointmentPublic]:
    slots = [
        {
            "start_us": to_us(s.start),
            "end_us": to_us(s.end),
            "service_centre_id": s.service_centre_id,
        }
        for s in body.slots
    ]
    rows = store.propose_slots(lead_id, slots, dealer_id=principal.dealer_id)
    return [_slot(row) for row in rows]


@router.get("/v1/leads/{lead_id}/appointments", summary="The lead's slots and bookings")
def list_appointments(
    lead_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> list[AppointmentPublic]:
    return [_slot(r) for r in store.appointments(lead_id, dealer_id=principal.dealer_id)]


@router.post(
    "/v1/appointments/{appointment_id}/book",
    summary="Book a proposed slot (the lead's other slots are declined)",
)
def book(
    appointment_id: RowId,
    principal: PrincipalDep,
    store: StoreDep,
    services: ServicesDep,
    audit: AuditDep,
) -> AppointmentPublic:
    row = store.book(appointment_id, dealer_id=principal.dealer_id)
    services.wake_sender()
    return _slot(row)


@router.post(
    "/v1/appointments/{appointment_id}/repair-order",
    status_code=status.HTTP_201_CREATED,
    summary="Open the repair order of a booked appointment",
)
def open_repair_order(
    appointment_id: RowId,
    body: RepairOrderCreate,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> RepairOrderPublic:
    row = store.open_repair_order(appointment_id, body.concern, dealer_id=principal.dealer_id)
    return _order(row, response)


@router.get("/v1/repair-orders/{order_id}", summary="Read a repair order")
def get_repair_order(
    order_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep, response: Response
) -> RepairOrderPublic:
    return _order(store.repair_order(order_id, dealer_id=principal.dealer_id), response)


@router.patch(
    "/v1/repair-orders/{order_id}",
    summary="Record concern, cause, correction, parts, labour and mileage (If-Match)",
)
def update_repair_order(
    order_id: RowId,
    body: RepairOrderUpdate,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> RepairOrderPublic:
    row = store.update_repair_order(
        order_id, version, changes(body, nullable=("mileage_km",)),
        dealer_id=principal.dealer_id,
    )  # fmt: skip
    return _order(row, response)


@router.post(
    "/v1/repair-orders/{order_id}/close",
    summary="Close the order (If-Match): the lead closes, the maintenance counter resets",
)
def close_order(
    order_id: RowId,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    services: ServicesDep,
    audit: AuditDep,
    response: Response,
) -> RepairOrderPublic:
    row = close_repair_order(store, order_id, version, dealer_id=principal.dealer_id)
    services.wake_sender()
    return _order(row, response)
