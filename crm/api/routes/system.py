"""The one anonymous route (health), OAuth2 client-credentials tokens, and API keys."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request, status

from crm.api.deps import AuditDep, PrincipalDep, ServicesDep, StoreDep, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import ApiKeyCreate, ApiKeyPublic, TokenPublic
from crm.auth import (
    Principal,
    Role,
    issue_access_token,
    parse_client_id,
    secret_matches,
)
from crm.errors import InvalidInput, NotFound, Unauthenticated
from crm.keys import issue_api_key

router = APIRouter(responses=ERROR_RESPONSES)

_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_id", "client_secret"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string", "example": "acme.0123456789abcdef"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.get("/health", tags=["system"], summary="Liveness: the only anonymous route")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.post(
    "/v1/oauth/token",
    tags=["auth"],
    summary="OAuth2 client credentials: an API key's id and secret for a short-lived token",
    openapi_extra=_TOKEN_FORM,
)
async def token(request: Request, services: ServicesDep) -> TokenPublic:
    # Parsed by hand: the form has three fields, not worth a multipart dependency.
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
    if form.get("grant_type") != "client_credentials":
        raise InvalidInput("grant_type must be client_credentials")
    key = parse_client_id(form.get("client_id", ""), form.get("client_secret", ""))
    try:
        store = services.stores.store(key.tenant)
    except NotFound as exc:
        raise Unauthenticated("unknown client") from exc
    row = store.api_key(key.key_id)
    if row is None or row["revoked_at_us"] is not None:
        raise Unauthenticated("unknown client")
    if not secret_matches(key.secret, row["secret_sha256"]):
        raise Unauthenticated("unknown client")
    principal = Principal(key.tenant, key.key_id, Role(row["role"]), row["dealer_id"])
    ttl = services.settings.token_ttl_seconds
    return TokenPublic(
        access_token=issue_access_token(principal, services.settings.token_secret, ttl),
        expires_in=ttl,
    )


@router.post(
    "/v1/api-keys",
    tags=["auth"],
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key for a dealer or an administrator (the key is shown once)",
)
def create_api_key(
    body: ApiKeyCreate, principal: PrincipalDep, store: StoreDep, audit: AuditDep
) -> ApiKeyPublic:
    require_admin(principal)
    key = issue_api_key(
        store, principal.tenant, role=Role(body.role), dealer_id=body.dealer_id, label=body.label
    )
    return ApiKeyPublic(
        key_id=key.key_id, role=body.role, dealer_id=body.dealer_id, label=body.label,
        key=key.text,
    )  # fmt: skip


@router.delete(
    "/v1/api-keys/{key_id}",
    tags=["auth"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key: its next request is refused",
)
def revoke_api_key(
    key_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,32}$")],
    principal: PrincipalDep,
    store: StoreDep,
    services: ServicesDep,
    audit: AuditDep,
) -> None:
    require_admin(principal)
    store.revoke_api_key(key_id)
    services.keys.forget(principal.tenant, key_id)
