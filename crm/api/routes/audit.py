"""The audit log, for the automaker: who read what, for which purpose, allowed or denied."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import AuditPublic, Id, PageOf, Time, times, to_us

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", summary="Query the audit log")
def query_audit(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    subject: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,32}$")] = None,
    dealer_id: Annotated[Id | None, Query()] = None,
    result: Annotated[Literal["allowed", "denied", "error"] | None, Query()] = None,
    since: Annotated[Time | None, Query()] = None,
) -> PageOf[AuditPublic]:
    require_admin(principal)
    rows = store.audit(
        after=page.after,
        limit=page.limit,
        principal=subject,
        dealer_id=dealer_id,
        result=result,
        since_us=None if since is None else to_us(since),
    )
    return PageOf[AuditPublic](
        items=[AuditPublic.model_validate(times(i, "at")) for i in rows.items],
        next_after=rows.next_after,
    )
