"""Who is calling: per-dealer API keys and OAuth2 client-credentials tokens.

An API key reads ``thk_<tenant>.<key id>.<secret>``. It names its tenant, so it
is looked up only in that tenant's store: a key of one automaker cannot even be
checked against another's. Only the SHA-256 of the secret is stored (the
secret is 256 random bits, so a slow password hash adds nothing).

A client-credentials token is a short-lived JWT (HS256) for the same identity:
``client_id`` is ``<tenant>.<key id>``, ``client_secret`` the key's secret.
Both carry one tenant and, for a dealer, one dealer; an administrator of the
automaker has no dealer and the ``admin`` role. PyJWT errors are translated here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from pydantic import SecretStr

from crm.errors import Unauthenticated

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "Principal",
    "Role",
    "hash_secret",
    "issue_access_token",
    "new_api_key",
    "parse_api_key",
    "parse_client_id",
    "secret_matches",
    "verify_access_token",
]

KEY_PREFIX = "thk_"
_AUDIENCE = "telehub-crm"
_KEY = re.compile(
    r"thk_(?P<tenant>[a-z0-9_-]{1,63})\.(?P<key_id>[A-Za-z0-9]{8,32})\.(?P<secret>[A-Za-z0-9_-]{20,128})"
)
_CLIENT_ID = re.compile(r"(?P<tenant>[a-z0-9_-]{1,63})\.(?P<key_id>[A-Za-z0-9]{8,32})")


class Role(StrEnum):
    ADMIN = "admin"  # the automaker: every record of its tenant, the audit log
    DEALER = "dealer"  # one dealer: only what grants and consent allow


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: always one tenant, and one dealer unless an admin."""

    tenant: str
    subject: str
    role: Role
    dealer_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class ApiKey:
    tenant: str
    key_id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{KEY_PREFIX}{self.tenant}.{self.key_id}.{self.secret}"


def new_api_key(tenant: str) -> ApiKey:
    return ApiKey(tenant, secrets.token_hex(8), secrets.token_urlsafe(32))


def parse_api_key(text: str) -> ApiKey:
    match = _KEY.fullmatch(text)
    if match is None:
        raise Unauthenticated("malformed API key")
    return ApiKey(match["tenant"], match["key_id"], match["secret"])


def parse_client_id(client_id: str, client_secret: str) -> ApiKey:
    match = _CLIENT_ID.fullmatch(client_id)
    if match is None:
        raise Unauthenticated("malformed client_id")
    return parse_api_key(f"{KEY_PREFIX}{match['tenant']}.{match['key_id']}.{client_secret}")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def issue_access_token(principal: Principal, key: SecretStr, ttl_seconds: int) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "aud": _AUDIENCE,
        "sub": principal.subject,
        "tenant": principal.tenant,
        "role": principal.role.value,
        "dealer": principal.dealer_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, key.get_secret_value(), algorithm="HS256")


def verify_access_token(token: str, key: SecretStr) -> Principal:
    try:
        claims = jwt.decode(
            token,
            key.get_secret_value(),
            algorithms=["HS256"],
            audience=_AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the access token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid access token: {exc}") from exc
    try:
        role = Role(claims["role"])
        dealer = claims["dealer"]
        tenant = str(claims["tenant"])
    except (KeyError, ValueError) as exc:
        raise Unauthenticated("the access token lacks its tenant, role or dealer") from exc
    if (role is Role.DEALER) != isinstance(dealer, int):
        raise Unauthenticated("a dealer token needs a dealer, an admin token none")
    return Principal(tenant, str(claims["sub"]), role, dealer if role is Role.DEALER else None)
