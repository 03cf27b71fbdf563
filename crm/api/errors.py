"""The one place CRM errors become HTTP answers, all with the ``ErrorBody`` shape.

Services raise ``crm.errors``; FastAPI's own validation errors and unknown
routes get the same body, so a client parses one error format.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm.api.schemas import ErrorBody
from crm.errors import (
    Conflict,
    CrmError,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    StoreUnavailable,
    Unauthenticated,
)

__all__ = ["ERROR_RESPONSES", "install_error_handlers", "status_of"]

_log = logging.getLogger(__name__)

_STATUS: dict[type[CrmError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    InvalidInput: 422,
    PreconditionRequired: 428,
    StoreUnavailable: 503,
}

#: The error answers every authenticated route may give, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": cls.__name__} for cls, status in _STATUS.items()
}


def status_of(exc: CrmError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def _body(code: str, message: str, details: list[object] | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details or []}}


async def _crm_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrmError)
    status = status_of(exc)
    if status >= 500:
        _log.error("request failed: %s", exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(_body(exc.code, str(exc)), status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = jsonable_encoder(
        [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    )
    return JSONResponse(
        _body(InvalidInput.code, "the request is not valid", details), status_code=422
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: NotFound.code, 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        _body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CrmError, _crm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
