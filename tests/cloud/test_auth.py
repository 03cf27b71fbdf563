"""Per-vehicle tokens: issue, verify, and every way a token is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from jwt.utils import base64url_encode

from cloud.auth import TokenVerifier, issue_token
from cloud.domain import VehicleIdentity
from cloud.errors import AuthError
from tests.cloud.conftest import SECRET_ACME, SECRET_GLOBEX


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier({"acme": SECRET_ACME, "globex": SECRET_GLOBEX})


def test_round_trip(verifier: TokenVerifier) -> None:
    token = issue_token("acme", "car-1", SECRET_ACME, ttl=timedelta(hours=1))
    assert verifier.verify(token) == VehicleIdentity(tenant="acme", vehicle_id="car-1")


def test_token_layout() -> None:
    token = issue_token("acme", "car-1", SECRET_ACME, ttl=timedelta(minutes=5))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["kid"] == "acme"
    assert header["alg"] == "HS256"
    assert claims["sub"] == "car-1"
    assert claims["exp"] - claims["iat"] == 300


def test_token_without_ttl_does_not_expire() -> None:
    token = issue_token("acme", "car-1", SECRET_ACME)
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})


def _refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    message = str(caught.value)
    for secret in (SECRET_ACME, SECRET_GLOBEX):
        assert secret.get_secret_value() not in message
    return message


def test_expired(verifier: TokenVerifier) -> None:
    issued = datetime.now(UTC) - timedelta(hours=2)
    token = issue_token("acme", "car-1", SECRET_ACME, ttl=timedelta(hours=1), now=issued)
    assert _refused(verifier, token) == "token expired"


def test_bad_signature(verifier: TokenVerifier) -> None:
    # A genuine token whose subject was swapped for another car's.
    head, _, signature = issue_token("acme", "car-1", SECRET_ACME).split(".")
    _, payload, _ = issue_token("acme", "car-2", SECRET_GLOBEX).split(".")
    assert "bad token signature" in _refused(verifier, f"{head}.{payload}.{signature}")


def test_signed_with_another_tenants_secret(verifier: TokenVerifier) -> None:
    # Claims to be globex but was signed with acme's key.
    token = issue_token("globex", "car-1", SECRET_ACME)
    assert "bad token signature for tenant 'globex'" in _refused(verifier, token)


def test_unknown_tenant(verifier: TokenVerifier) -> None:
    token = issue_token("initech", "car-1", SECRET_ACME)
    assert "unknown tenant 'initech'" in _refused(verifier, token)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "ey.ey.ey"])
def test_malformed(verifier: TokenVerifier, token: str) -> None:
    assert "malformed token" in _refused(verifier, token)


def test_missing_kid(verifier: TokenVerifier) -> None:
    token = jwt.encode({"sub": "car-1", "iat": 0}, SECRET_ACME.get_secret_value())
    assert "no tenant key id" in _refused(verifier, token)


def test_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    header = base64url_encode(b'{"alg":"none","kid":"acme"}').decode()
    payload = base64url_encode(b'{"sub":"car-1","iat":0}').decode()
    token = f"{header}.{payload}."
    assert "invalid token" in _refused(verifier, token)


def test_missing_subject(verifier: TokenVerifier) -> None:
    token = jwt.encode(
        {"iat": 0}, SECRET_ACME.get_secret_value(), algorithm="HS256", headers={"kid": "acme"}
    )
    assert "sub" in _refused(verifier, token)


def test_empty_vehicle_id_cannot_be_issued() -> None:
    with pytest.raises(ValueError, match="vehicle_id"):
        issue_token("acme", "", SECRET_ACME)
