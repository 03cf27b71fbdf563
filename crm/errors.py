"""Exceptions raised by the CRM, grouped by what the caller can do.

::

    CrmError
    ├── Unauthenticated      no credential, or one that is malformed, forged, revoked or expired
    ├── Forbidden            authenticated, but not allowed (no grant, no consent, wrong role)
    ├── NotFound             the resource does not exist in the caller's tenant
    ├── Conflict             the request contradicts the resource's state (a duplicate, a lead
    │                        already closed, a slot already booked)
    ├── PreconditionFailed   ``If-Match`` names a version that is no longer current
    ├── PreconditionRequired an update came without ``If-Match``
    ├── InvalidInput         well-formed but unacceptable input (an end before its start, ...)
    └── StoreUnavailable     the tenant's database failed; nothing was committed

Services raise these; ``crm.api.errors`` maps each to one HTTP status and one
error body. ``cloud.errors.StoreError`` is translated where the CRM calls the
cloud's store.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "CrmError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PreconditionFailed",
    "PreconditionRequired",
    "StoreUnavailable",
    "Unauthenticated",
]


class CrmError(Exception):
    """Root of every error the CRM raises on purpose; ``code`` is the error body's code."""

    code = "crm_error"


class Unauthenticated(CrmError):
    code = "unauthenticated"


class Forbidden(CrmError):
    code = "forbidden"


class NotFound(CrmError):
    code = "not_found"


class Conflict(CrmError):
    code = "conflict"


class PreconditionFailed(CrmError):
    code = "precondition_failed"


class PreconditionRequired(CrmError):
    code = "precondition_required"


class InvalidInput(CrmError):
    code = "invalid_input"


class StoreUnavailable(CrmError):
    code = "store_unavailable"
