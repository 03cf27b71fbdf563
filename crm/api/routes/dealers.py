"""Dealers and their service centres."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, VersionDep, etag, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import MAX_ID, Code, DealerCreate, DealerPublic, DealerUpdate, PageOf
from crm.errors import Forbidden

router = APIRouter(prefix="/v1/dealers", tags=["dealers"], responses=ERROR_RESPONSES)
DealerId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a dealer")
def create_dealer(
    body: DealerCreate,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> DealerPublic:
    require_admin(principal)
    row = store.create_dealer(body.code, body.name, [c.model_dump() for c in body.service_centres])
    response.headers["ETag"] = etag(row["version"])
    return DealerPublic.model_validate(row)


@router.get("", summary="List dealers (a dealer sees only itself)")
def list_dealers(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    code: Annotated[Code | None, Query()] = None,
) -> PageOf[DealerPublic]:
    if principal.is_admin:
        result = store.dealers(after=page.after, limit=page.limit, code=code)
        return PageOf[DealerPublic](
            items=[DealerPublic.model_validate(i) for i in result.items],
            next_after=result.next_after,
        )
    assert principal.dealer_id is not None
    own = store.dealer(principal.dealer_id)
    keep = (code is None or own["code"] == code) and (page.after or 0) < own["id"]
    return PageOf[DealerPublic](
        items=[DealerPublic.model_validate(own)] if keep else [], next_after=None
    )


@router.get("/{dealer_id}", summary="Read a dealer")
def get_dealer(
    dealer_id: DealerId,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> DealerPublic:
    if not principal.is_admin and principal.dealer_id != dealer_id:
        raise Forbidden("a dealer reads only its own record")
    row = store.dealer(dealer_id)
    response.headers["ETag"] = etag(row["version"])
    return DealerPublic.model_validate(row)


@router.patch("/{dealer_id}", summary="Update a dealer (If-Match: its ETag)")
def update_dealer(
    dealer_id: DealerId,
    body: DealerUpdate,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> DealerPublic:
    require_admin(principal)
    row = store.update_dealer(dealer_id, version, body.model_dump(exclude_unset=True))
    response.headers["ETag"] = etag(row["version"])
    return DealerPublic.model_validate(row)
