"""Consents per purpose (who, what purpose, which dealer, from/to, source) and grants.

A withdrawal or a grant's end takes effect on the next request of any dealer:
access is evaluated per request, nothing is cached.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import (
    MAX_ID,
    ConsentCreate,
    ConsentPublic,
    GrantCreate,
    GrantPublic,
    Id,
    PageOf,
    Purpose,
    times,
    to_us,
)
from crm.errors import InvalidInput

router = APIRouter(tags=["consents and grants"], responses=ERROR_RESPONSES)
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
_CONSENT_TIMES = ("valid_from", "valid_to", "withdrawn_at")


@router.post("/v1/consents", status_code=status.HTTP_201_CREATED, summary="Record a consent")
def create_consent(
    body: ConsentCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> ConsentPublic:
    require_admin(principal)
    if body.valid_to is not None and body.valid_to <= body.valid_from:
        raise InvalidInput("a consent must end after it starts")
    values = body.model_dump(exclude={"valid_from", "valid_to"})
    row = store.create_consent(
        {
            **values,
            "valid_from_us": to_us(body.valid_from),
            "valid_to_us": None if body.valid_to is None else to_us(body.valid_to),
        }
    )
    return ConsentPublic.model_validate(times(row, *_CONSENT_TIMES))


@router.post(
    "/v1/consents/{consent_id}/withdraw",
    summary="Withdraw a consent now: the next request of every dealer sees it",
)
def withdraw_consent(
    consent_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> ConsentPublic:
    require_admin(principal)
    return ConsentPublic.model_validate(times(store.withdraw_consent(consent_id), *_CONSENT_TIMES))


@router.get("/v1/consents", summary="List consents, by vehicle or purpose")
def list_consents(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    vehicle_id: Annotated[Id | None, Query()] = None,
    purpose: Annotated[Purpose | None, Query()] = None,
) -> PageOf[ConsentPublic]:
    require_admin(principal)
    result = store.consents(
        after=page.after, limit=page.limit, vehicle_id=vehicle_id, purpose=purpose
    )
    return PageOf[ConsentPublic](
        items=[ConsentPublic.model_validate(times(i, *_CONSENT_TIMES)) for i in result.items],
        next_after=result.next_after,
    )


@router.post("/v1/grants", status_code=status.HTTP_201_CREATED, summary="Grant a dealer a vehicle")
def create_grant(
    body: GrantCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> GrantPublic:
    require_admin(principal)
    row = store.create_grant(
        {
            "dealer_id": body.dealer_id,
            "vehicle_id": body.vehicle_id,
            "purposes": body.purposes,
            "fields": body.fields,
            "valid_from_us": to_us(body.valid_from),
            "valid_to_us": None if body.valid_to is None else to_us(body.valid_to),
        }
    )
    return GrantPublic.model_validate(times(row, "valid_from", "valid_to"))


@router.post("/v1/grants/{grant_id}/end", summary="End a grant now")
def end_grant(
    grant_id: RowId, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> GrantPublic:
    require_admin(principal)
    return GrantPublic.model_validate(times(store.end_grant(grant_id), "valid_from", "valid_to"))


@router.get("/v1/grants", summary="List grants (a dealer sees its own)")
def list_grants(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    vehicle_id: Annotated[Id | None, Query()] = None,
    dealer_id: Annotated[Id | None, Query()] = None,
) -> PageOf[GrantPublic]:
    if not principal.is_admin:
        dealer_id = principal.dealer_id
    result = store.grants(
        after=page.after, limit=page.limit, dealer_id=dealer_id, vehicle_id=vehicle_id
    )
    return PageOf[GrantPublic](
        items=[
            GrantPublic.model_validate(times(i, "valid_from", "valid_to")) for i in result.items
        ],
        next_after=result.next_after,
    )
