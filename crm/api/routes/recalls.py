"""Recall campaigns (VIN lists) with per-vehicle status: open, notified, booked, done."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, VersionDep, etag, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import MAX_ID, PageOf, Vin, times
from crm.api.service_schemas import (
    RecallCreate,
    RecallPublic,
    RecallVehiclePublic,
    RecallVehicleUpdate,
)
from crm.errors import NotFound

router = APIRouter(prefix="/v1/recalls", tags=["recalls"], responses=ERROR_RESPONSES)
RecallId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Start a recall campaign")
def create_recall(
    body: RecallCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> RecallPublic:
    require_admin(principal)
    return RecallPublic.model_validate(
        times(store.create_recall(body.code, body.title, body.vins), "created")
    )


@router.get("", summary="List recall campaigns")
def list_recalls(
    principal: PrincipalDep, store: StoreDep, audit: AuditDep, page: PageDep
) -> PageOf[RecallPublic]:
    result = store.recalls(after=page.after, limit=page.limit)
    return PageOf[RecallPublic](
        items=[RecallPublic.model_validate(times(i, "created")) for i in result.items],
        next_after=result.next_after,
    )


@router.get(
    "/{recall_id}/vehicles",
    summary="The campaign's vehicles and their status (a dealer: those it holds grants on)",
)
def recall_vehicles(
    recall_id: RecallId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> list[RecallVehiclePublic]:
    rows = store.recall_vehicles(recall_id, dealer_id=principal.dealer_id)
    return [RecallVehiclePublic.model_validate(times(r, "updated")) for r in rows]


@router.patch(
    "/{recall_id}/vehicles/{vin}",
    summary="Move a vehicle's recall status forward (If-Match: its ETag)",
)
def set_recall_status(
    recall_id: RecallId,
    vin: Annotated[Vin, Path()],
    body: RecallVehicleUpdate,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> RecallVehiclePublic:
    if not principal.is_admin:
        # A dealer may only move vehicles it can see in the campaign.
        visible = {
            r["vin"] for r in store.recall_vehicles(recall_id, dealer_id=principal.dealer_id)
        }
        if vin not in visible:
            raise NotFound(f"vehicle {vin} is not in recall {recall_id}")
    row = store.set_recall_status(recall_id, vin, version, body.status)
    response.headers["ETag"] = etag(row["version"])
    return RecallVehiclePublic.model_validate(times(row, "updated"))
