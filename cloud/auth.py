"""Per-vehicle credentials: HS256 tokens signed with the tenant's secret.

A token's header carries ``kid`` = tenant name so the verifier knows which
tenant's key to check it with; the claims carry ``sub`` = vehicle id, ``iat``
and optionally ``exp``. The unverified header only *selects* a key: nothing in
it is trusted until the signature checks out with that tenant's key, so a
token signed by tenant A's key but claiming tenant B fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import SecretStr

from cloud.domain import VehicleIdentity
from cloud.errors import AuthError

__all__ = ["TokenVerifier", "issue_token"]

_ALGORITHM = "HS256"
#: Tolerated clock difference between the process that issued a token and the one
#: verifying it (several gateways run on several machines).
_LEEWAY = timedelta(seconds=30)


def issue_token(
    tenant: str,
    vehicle_id: str,
    secret: SecretStr,
    *,
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> str:
    """Sign a credential for ``vehicle_id`` of ``tenant``; without ``ttl`` it never expires.

    ``now`` (timezone-aware) replaces the clock, for tests and for back-dated tokens.
    """
    if not vehicle_id:
        raise ValueError("vehicle_id must not be empty")
    issued = now if now is not None else datetime.now(UTC)
    claims: dict[str, Any] = {"sub": vehicle_id, "iat": int(issued.timestamp())}
    if ttl is not None:
        claims["exp"] = int((issued + ttl).timestamp())
    return jwt.encode(
        claims, secret.get_secret_value(), algorithm=_ALGORITHM, headers={"kid": tenant}
    )


class TokenVerifier:
    """Checks vehicle tokens against the key of the tenant each one names."""

    def __init__(self, tenants: Mapping[str, SecretStr]) -> None:
        self._keys = dict(tenants)

    def verify(self, token: str) -> VehicleIdentity:
        """Return who the token was issued to, or raise ``AuthError`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        tenant = header.get("kid")
        if not isinstance(tenant, str) or not tenant:
            raise AuthError("malformed token: no tenant key id (kid) in its header")
        key = self._keys.get(tenant)
        if key is None:
            raise AuthError(f"unknown tenant {tenant!r}")
        try:
            claims = jwt.decode(
                token,
                key.get_secret_value(),
                # Pinning the algorithm stops a token from choosing a weaker one ("none").
                algorithms=[_ALGORITHM],
                options={"require": ["sub", "iat"]},
                leeway=_LEEWAY,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(f"bad token signature for tenant {tenant!r}") from exc
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed claim, never the key.
            raise AuthError(f"invalid token: {exc}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthError("invalid token: empty subject")
        return VehicleIdentity(tenant=tenant, vehicle_id=subject)
