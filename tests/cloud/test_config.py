"""CloudSettings: defaults, environment, validation, tenant URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cloud.config import CloudSettings, TenantSettings
from cloud.domain import AGENT_DEFAULT_PURPOSES, Purpose
from tests.cloud.conftest import SECRET_ACME


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TELEHUB_LISTEN", "TELEHUB_DATA_DIR", "TELEHUB_TENANTS"):
        monkeypatch.delenv(name, raising=False)
    settings = CloudSettings()
    assert settings.listen == "127.0.0.1:50051"
    assert settings.data_dir == Path("telehub-data")
    assert settings.tenants == {}
    assert settings.max_batch_samples == 50_000
    assert settings.max_message_bytes == 8 * 1024 * 1024
    assert settings.grace_seconds == 5.0


def test_tenants_from_nested_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TELEHUB_LISTEN", "0.0.0.0:0")
    monkeypatch.setenv("TELEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TELEHUB_TENANTS__ACME__TOKEN_SECRET", SECRET_ACME.get_secret_value())
    monkeypatch.setenv("TELEHUB_TENANTS__GLOBEX__TOKEN_SECRET", "g" * 40)
    monkeypatch.setenv(
        "TELEHUB_TENANTS__GLOBEX__DATABASE_URL", "postgresql+psycopg://db.globex.example/telehub"
    )
    settings = CloudSettings()
    assert settings.listen == "0.0.0.0:0"
    assert sorted(settings.tenants) == ["acme", "globex"]
    assert settings.database_url("acme") == f"sqlite:///{tmp_path / 'acme.db'}"
    assert settings.database_url("globex") == "postgresql+psycopg://db.globex.example/telehub"
    assert settings.token_secrets()["acme"] == SECRET_ACME


def test_unknown_tenant_url_is_a_key_error(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path)
    with pytest.raises(KeyError):
        settings.database_url("nobody")


@pytest.mark.parametrize("name", ["Acme", "ac me", "acme!", "../etc", "", "a" * 64])
def test_tenant_names_are_validated(name: str) -> None:
    with pytest.raises(ValidationError, match="tenant name"):
        CloudSettings(tenants={name: TenantSettings(token_secret=SECRET_ACME)})


def test_short_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        TenantSettings(token_secret=SecretStr("hunter2-too-short"))
    assert "at least 32 bytes" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_is_hidden_from_repr() -> None:
    settings = CloudSettings(tenants={"acme": TenantSettings(token_secret=SECRET_ACME)})
    assert SECRET_ACME.get_secret_value() not in repr(settings)


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:70000", ":", "host:port"])
def test_listen_must_be_host_and_port(listen: str) -> None:
    with pytest.raises(ValidationError, match="listen"):
        CloudSettings(listen=listen)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::]:50051", "gateway.local:443"])
def test_listen_accepts_addresses(listen: str) -> None:
    assert CloudSettings(listen=listen).listen == listen


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch_samples", 0), ("max_message_bytes", 10), ("grace_seconds", -1)],
)
def test_limits_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        CloudSettings.model_validate({field: value})


def test_default_consent_and_control_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEHUB_TENANTS__ACME__TOKEN_SECRET", SECRET_ACME.get_secret_value())
    monkeypatch.setenv("TELEHUB_TENANTS__GLOBEX__TOKEN_SECRET", "g" * 40)
    monkeypatch.setenv("TELEHUB_TENANTS__GLOBEX__DEFAULT_CONSENT", '["diagnostics"]')
    settings = CloudSettings()
    assert settings.control_poll_seconds == 5.0
    assert settings.default_consent == AGENT_DEFAULT_PURPOSES
    assert Purpose.LOCATION not in settings.default_consent_of("acme")
    assert settings.default_consent_of("globex") == {Purpose.DIAGNOSTICS}
    with pytest.raises(ValidationError, match="control_poll_seconds"):
        CloudSettings(control_poll_seconds=0)
    with pytest.raises(ValidationError, match="default_consent"):
        CloudSettings.model_validate({"default_consent": ["advertising"]})


def test_the_event_bus_is_in_process_by_default_or_a_nats_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TELEHUB_EVENT_BUS", raising=False)
    assert CloudSettings().event_bus == "memory"
    monkeypatch.setenv("TELEHUB_EVENT_BUS", "nats://127.0.0.1:4222")
    monkeypatch.setenv("TELEHUB_EVENT_BUS_CAPACITY", "5000")
    settings = CloudSettings()
    assert (settings.event_bus, settings.event_bus_capacity) == ("nats://127.0.0.1:4222", 5000)
    assert CloudSettings(event_bus="tls://[::1]:4443").event_bus == "tls://[::1]:4443"


@pytest.mark.parametrize(
    "value",
    ["nats", "nats://127.0.0.1", "http://127.0.0.1:4222", "nats://127.0.0.1:99999", "Memory"],
)
def test_an_event_bus_that_is_neither_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="event_bus"):
        CloudSettings(event_bus=value)
