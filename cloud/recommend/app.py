"""The recommendation API: ``create_app(settings)`` wires the service into FastAPI.

Routes (all but ``/health`` need an ``X-API-Key`` that names one tenant; a
tenant only ever sees its own catalog):

- ``POST /v1/recommendations``: the head unit or app sends the context;
- ``POST /v1/vehicles/recommendations``: the tenant's vehicle id, the context
  built in the cloud from the vehicle's stored state and consent;
- ``GET /v1/catalog``: counts of the tenant's catalog;
- ``GET /health``.

Nothing about the driver is kept. The access log (``telehub.recommend.access``)
has the method, the route, the status and the time taken: no query string, no
body, no position, token or vehicle id. Errors map to one JSON shape
(:class:`ErrorBody`) in :func:`_install_handlers`; bad input is always a 4xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated

import pydantic_core
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.errors import CloudError, NotPermitted, StoreError, UnknownTenant, UnknownVehicle
from cloud.recommend.config import RecommendSettings
from cloud.recommend.context import Fault, Precision
from cloud.recommend.errors import InvalidApiKey, InvalidContext
from cloud.recommend.ranking import Recommendations
from cloud.recommend.schemas import (
    CatalogSummary,
    ContextIn,
    ErrorBody,
    ErrorDetail,
    Health,
    RecommendationsOut,
    VehicleContextIn,
)
from cloud.recommend.service import Client, ContextDraft, RecommendService
from cloud.recommend.vehicle_state import VehicleStates

__all__ = ["create_app"]

ACCESS_LOG = logging.getLogger("telehub.recommend.access")
_ERRORS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}
_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 503)
}
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True, slots=True)
class Access:
    """An authenticated request: who called, and the service that answers it."""

    client: Client
    service: RecommendService


async def _access(request: Request, key: Annotated[str | None, Depends(_API_KEY)]) -> Access:
    # async: FastAPI runs a plain function in a thread pool, a thread hop per request
    # for microseconds of work. One dependency for both: each one solved costs.
    service: RecommendService = request.app.state.recommend
    return Access(service.authenticate(key), service)


#: The authenticated caller: every route but ``/health`` depends on it.
Caller = Annotated[Access, Depends(_access)]


def create_app(
    settings: RecommendSettings,
    *,
    service: RecommendService | None = None,
    states: VehicleStates | None = None,
) -> FastAPI:
    """The app for ``settings``; ``service`` defaults to one loading each tenant's catalog,
    ``states`` (the vehicle-state reader) to none, which turns that route off (503)."""
    recommend = service or RecommendService(settings)
    app = FastAPI(
        title="telehub recommendations",
        version="1",
        description=__doc__,
        responses=_ERROR_RESPONSES,
    )
    app.state.recommend = recommend

    @app.get("/health", tags=["health"])
    async def health() -> Health:
        return Health(tenants=len(settings.tenants))

    @app.get("/v1/catalog", tags=["catalog"])
    async def catalog(caller: Caller) -> CatalogSummary:
        tenant = caller.client.tenant
        recommender = caller.service.tenant(tenant).recommender
        return CatalogSummary(
            tenant=tenant,
            points_of_interest=recommender.kind_counts,
            content_items=len(recommender.content),
        )

    @app.post("/v1/recommendations", tags=["recommendations"], response_model=RecommendationsOut)
    async def recommendations(body: ContextIn, caller: Caller) -> Response:
        draft = ContextDraft(
            lat=body.position.lat,
            lon=body.position.lon,
            exact=body.position.precision is Precision.EXACT,
            local_time=body.local_time,
            energy=body.energy,
            level_pct=body.level_pct,
            range_km=body.range_km,
            connectors=None if body.connectors is None else frozenset(body.connectors),
            faults=tuple(Fault(f.code.upper(), f.severity) for f in body.faults),
            maintenance=body.maintenance,
            model=body.model,
            limit=body.limit,
            content_limit=body.content_limit,
            token=body.token,
        )
        context, result = caller.service.recommend(caller.client, draft)
        return _answer(context.token, context.position.precision, result)

    @app.post(
        "/v1/vehicles/recommendations", tags=["recommendations"], response_model=RecommendationsOut
    )
    async def vehicle_recommendations(body: VehicleContextIn, caller: Caller) -> Response:
        if states is None:
            raise StoreError("vehicle state is not available in this deployment")
        snapshot = await asyncio.to_thread(states, caller.client.tenant, body.vehicle_id)
        notes = () if snapshot.level_pct is not None else ("no fuel level or charge stored",)
        draft = ContextDraft(
            lat=snapshot.lat,
            lon=snapshot.lon,
            exact=snapshot.location_consent,
            local_time=body.local_time,
            energy=snapshot.energy,
            level_pct=snapshot.level_pct,
            faults=snapshot.faults,
            maintenance=snapshot.maintenance,
            model=snapshot.model,
            limit=body.limit,
            content_limit=body.content_limit,
            token=caller.service.token(caller.client, body.vehicle_id),
            notes=notes,
        )
        context, result = caller.service.recommend(caller.client, draft)
        return _answer(context.token, context.position.precision, result)

    _install_handlers(app)
    app.add_middleware(_Guard, max_body_bytes=settings.max_body_bytes)
    return app


def _answer(token: str | None, precision: Precision, result: Recommendations) -> Response:
    """The answer as ``RecommendationsOut`` (the route's documented model) lays it out.

    Built as plain dicts and encoded once: through the models it took some thirty
    pydantic validations per answer, and FastAPI would then validate the model
    again before encoding it (a test checks the shape against the model).
    """
    answer = {
        "token": token,
        "position_precision": precision.value,
        "range_km": None if result.range_km is None else round(result.range_km, 1),
        "usable_range_km": None if result.usable_km is None else round(result.usable_km, 1),
        "suggestions": [
            {
                "id": s.poi.id,
                "kind": s.poi.kind.value,
                "name": s.poi.name,
                "lat": s.poi.lat,
                "lon": s.poi.lon,
                "brand": s.poi.brand,
                "address": s.poi.address,
                "connectors": sorted(c.value for c in s.poi.connectors),
                "power_kw": s.poi.power_kw,
                "price": s.poi.price,
                "distance_km": s.distance_km,
                "score": s.score,
                "reasons": [{"code": r.code, "text": r.text} for r in s.reasons],
            }
            for s in result.suggestions
        ],
        "content": [
            {
                "id": c.item.id,
                "kind": c.item.kind.value,
                "title": c.item.title,
                "summary": c.item.summary,
                "url": c.item.url,
                "score": c.score,
                "reasons": [{"code": r.code, "text": r.text} for r in c.reasons],
            }
            for c in result.content
        ],
        "notes": list(result.notes),
    }
    return Response(pydantic_core.to_json(answer), media_type="application/json")


def _error(
    status: int,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        error=_ERRORS.get(status, "error"),
        message=message,
        details=[ErrorDetail(**detail) for detail in details or []],
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _install_handlers(app: FastAPI) -> None:
    """The one place errors become HTTP answers."""

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
        return _error(422, f"invalid request: {summary}", details)

    async def cloud_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InvalidApiKey):
            return _error(401, str(exc), headers={"WWW-Authenticate": "X-API-Key"})
        if isinstance(exc, InvalidContext):
            return _error(422, str(exc), [{"field": exc.field, "message": str(exc)}])
        if isinstance(exc, NotPermitted):
            return _error(403, str(exc))
        if isinstance(exc, UnknownVehicle | UnknownTenant):
            return _error(404, "no such vehicle for this tenant")
        if isinstance(exc, StoreError):
            return _error(503, str(exc))
        return _error(400, str(exc))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail))

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(CloudError, cloud_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


class _Guard:
    """Pure ASGI middleware: refuses oversized bodies and writes the access log.

    Plain ASGI rather than ``BaseHTTPMiddleware``, which costs a task per request.
    The log line holds the route template, never the query string or the body.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self._app = app
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max):
            response = _error(413, f"the body must be at most {self._max} bytes")
            await response(scope, receive, send)
            status = 413
        else:
            received = 0

            async def limited() -> Message:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > self._max:
                    raise StarletteHTTPException(413, f"the body must be at most {self._max} bytes")
                return message

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self._app(scope, limited, sending)
        if ACCESS_LOG.isEnabledFor(logging.INFO):
            route = scope.get("route")
            path = getattr(route, "path", None) or "(no route)"
            ACCESS_LOG.info(
                "%s %s %d %.1f ms",
                scope["method"],
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )
