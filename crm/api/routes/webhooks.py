"""Webhooks of a dealer's systems, their deliveries, and replay of dead letters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, ServicesDep, StoreDep
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import MAX_ID, PageOf, times
from crm.api.service_schemas import DeliveryPublic, WebhookCreate, WebhookPublic
from crm.errors import InvalidInput

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)


@router.post("/v1/webhooks", status_code=status.HTTP_201_CREATED, summary="Subscribe a URL")
def create_webhook(
    body: WebhookCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> WebhookPublic:
    dealer_id = principal.dealer_id if not principal.is_admin else body.dealer_id
    if dealer_id is None:
        raise InvalidInput("an administrator names the dealer of the webhook")
    if principal.dealer_id is not None and body.dealer_id not in (None, principal.dealer_id):
        raise InvalidInput("a dealer subscribes only its own webhooks")
    store.dealer(dealer_id)
    return WebhookPublic.model_validate(store.create_webhook(dealer_id, str(body.url), body.secret))


@router.get("/v1/webhooks", summary="List webhooks (a dealer sees its own)")
def list_webhooks(
    principal: PrincipalDep, store: StoreDep, audit: AuditDep, page: PageDep
) -> PageOf[WebhookPublic]:
    result = store.webhooks(dealer_id=principal.dealer_id, after=page.after, limit=page.limit)
    return PageOf[WebhookPublic](
        items=[WebhookPublic.model_validate(i) for i in result.items],
        next_after=result.next_after,
    )


@router.get("/v1/webhook-deliveries", summary="Deliveries, e.g. the dead letters (state=dead)")
def list_deliveries(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
) -> PageOf[DeliveryPublic]:
    result = store.deliveries(
        dealer_id=principal.dealer_id, state=state, after=page.after, limit=page.limit
    )
    return PageOf[DeliveryPublic](
        items=[
            DeliveryPublic.model_validate(times(i, "created", "finished")) for i in result.items
        ],
        next_after=result.next_after,
    )


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/replay",
    summary="Send a dead letter again, from its first attempt",
)
def replay(
    delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: PrincipalDep,
    store: StoreDep,
    services: ServicesDep,
    audit: AuditDep,
) -> DeliveryPublic:
    row = store.replay(delivery_id, dealer_id=principal.dealer_id)
    services.wake_sender()
    return DeliveryPublic.model_validate(times(row, "created", "finished"))
