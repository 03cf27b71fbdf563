"""Dependencies of the routes: the caller, its tenant's store, the audit trail, paging
and ``If-Match``.

Every route that touches personal or vehicle data takes ``AuditDep``: the
trail writes one audit row when the route ends, ``allowed`` or, when it
raised a CRM error (no grant, withdrawn consent, not an admin, ...),
``denied`` with the status the caller got. Checks that can deny therefore run
inside the route, after the trail exists (``require_admin``,
``AuditTrail.purpose``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm.api.errors import status_of
from crm.api.health_pages import HealthPages
from crm.api.schemas import parse_etag
from crm.audit import AuditWriter
from crm.auth import (
    KEY_PREFIX,
    Principal,
    Role,
    parse_api_key,
    secret_matches,
    verify_access_token,
)
from crm.config import CrmSettings
from crm.errors import (
    CrmError,
    Forbidden,
    NotFound,
    PreconditionRequired,
    Unauthenticated,
)
from crm.keycache import KeyCache
from crm.store import CrmStore, CrmStores
from crm.store.base import now_us
from crm.webhooks import WebhookSender

__all__ = [
    "AfterQuery",
    "AuditDep",
    "AuditTrail",
    "Caller",
    "CallerDep",
    "LimitQuery",
    "PageDep",
    "PrincipalDep",
    "Services",
    "ServicesDep",
    "StoreDep",
    "VersionDep",
    "audit_trail",
    "authenticate",
    "require_admin",
]


@dataclass
class Services:
    """What the app's routes share, built by ``create_app``."""

    settings: CrmSettings
    stores: CrmStores
    sender: WebhookSender
    audit: AuditWriter
    keys: KeyCache
    health: HealthPages

    def wake_sender(self) -> None:
        self.sender.wake()


# Dependencies that do no blocking IO are ``async def``: FastAPI runs a plain ``def``
# dependency in its thread pool, a hop that costs more than these functions do.


async def _services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(_services)]

_bearer = HTTPBearer(auto_error=False, description="an API key (thk_...) or an access token")


def authenticate(services: Services, credential: str) -> Principal:
    """The caller behind an API key or an access token."""
    if not credential.startswith(KEY_PREFIX):
        return verify_access_token(credential, services.settings.token_secret)
    key = parse_api_key(credential)
    try:
        store = services.stores.store(key.tenant)
    except NotFound as exc:
        raise Unauthenticated("unknown API key") from exc
    row = store.api_key(key.key_id)
    if row is None or not secret_matches(key.secret, row["secret_sha256"]):
        raise Unauthenticated("unknown API key")
    if row["revoked_at_us"] is not None:
        raise Unauthenticated("the API key was revoked")
    return Principal(key.tenant, key.key_id, Role(row["role"]), row["dealer_id"])


async def _principal_of(
    services: Services, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None:
        raise Unauthenticated("this route needs an API key or an access token")
    credential = credentials.credentials
    if not credential.startswith(KEY_PREFIX):
        return authenticate(services, credential)  # a token: no IO
    principal = services.keys.get(credential)
    if principal is None:
        principal = await asyncio.to_thread(authenticate, services, credential)
        services.keys.put(credential, principal)
    return principal


async def _store_of(services: Services, principal: Principal) -> CrmStore:
    # Always the caller's own tenant: no route takes a tenant from the request. The
    # store was opened when the caller's key was checked (a token's tenant may not be).
    store = services.stores.opened(principal.tenant)
    if store is None:
        store = await asyncio.to_thread(services.stores.store, principal.tenant)
    return store


_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _principal(services: ServicesDep, credentials: _Credentials) -> Principal:
    return await _principal_of(services, credentials)


PrincipalDep = Annotated[Principal, Depends(_principal)]


async def _store(services: ServicesDep, principal: PrincipalDep) -> CrmStore:
    return await _store_of(services, principal)


StoreDep = Annotated[CrmStore, Depends(_store)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller, its tenant's store and the app's services, resolved in one step."""

    principal: Principal
    store: CrmStore
    services: Services


async def _caller(request: Request, credentials: _Credentials) -> Caller:
    # What PrincipalDep, StoreDep and ServicesDep give, as one dependency: solving the
    # three cost the hottest route ~100 µs of its ~500 µs of CPU (measured in process).
    services = await _services(request)
    principal = await _principal_of(services, credentials)
    return Caller(principal, await _store_of(services, principal), services)


CallerDep = Annotated[Caller, Depends(_caller)]


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this needs the automaker's administrator role")


class AuditTrail:
    """The audit row of one request; the route may name its purpose and resource."""

    def __init__(self, action: str, resource: str, principal: Principal) -> None:
        self.action = action
        self.resource = resource
        self.purpose = "administration" if principal.is_admin else "after_sales"
        self.principal = principal

    def row(self, result: str, status: int, *, at_us: int | None = None) -> dict[str, object]:
        return {
            "at_us": now_us() if at_us is None else at_us,
            "principal": self.principal.subject,
            "role": self.principal.role.value,
            "dealer_id": self.principal.dealer_id,
            "purpose": self.purpose,
            "action": self.action,
            "resource": self.resource[:500],
            "result": result,
            "status": status,
        }


def audit_trail(request: Request, principal: Principal) -> AuditTrail:
    """The audit row of this request, for a route that commits it itself."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    return AuditTrail(f"{request.method} {template}", request.url.path, principal)


async def _audit(
    request: Request, principal: PrincipalDep, services: ServicesDep
) -> AsyncIterator[AuditTrail]:
    trail = audit_trail(request, principal)
    try:
        yield trail
    except CrmError as exc:
        status = status_of(exc)
        row = trail.row("denied" if status in (401, 403) else "error", status)
        await services.audit.write(principal.tenant, row)
        raise
    await services.audit.write(principal.tenant, trail.row("allowed", 200))


AuditDep = Annotated[AuditTrail, Depends(_audit)]


@dataclass(frozen=True)
class PageParams:
    after: int | None
    limit: int


AfterQuery = Annotated[
    int | None, Query(ge=0, le=2**31 - 1, description="the `next_after` of the last page")
]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="items per page")]


async def _page(after: AfterQuery = None, limit: LimitQuery = 50) -> PageParams:
    return PageParams(after, limit)


PageDep = Annotated[PageParams, Depends(_page)]


# Takes the caller first, so an anonymous update is a 401, not a 428.
async def _version(
    _caller: PrincipalDep,
    if_match: Annotated[
        str | None, Header(description='the ETag of the version you read, e.g. "3"')
    ] = None,
) -> int:
    if if_match is None:
        raise PreconditionRequired("an update needs If-Match with the ETag you read")
    return parse_etag(if_match)


VersionDep = Annotated[int, Depends(_version)]


def etag(version: int) -> str:
    return f'"{version}"'
