"""Settings refuse default secrets outside dev mode and read each service's own prefix."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.profile.settings import ProfileSettings
from services.tiering.settings import TieringSettings
from shared.settings import DEV_API_KEY

STRONG = {"k" * 24: {"roles": ["admin"], "user": "ops"}}


def test_empty_keys_are_refused_outside_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_API_KEYS", raising=False)
    monkeypatch.delenv("CRM_DEV_MODE", raising=False)
    with pytest.raises(ValidationError, match="CRM_API_KEYS is empty"):
        ProfileSettings()


def test_dev_mode_accepts_the_well_known_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_API_KEYS", raising=False)
    monkeypatch.setenv("CRM_DEV_MODE", "true")
    settings = ProfileSettings()
    assert list(settings.api_keys) == [DEV_API_KEY]


@pytest.mark.parametrize("key", [DEV_API_KEY, "short", "change-me-to-a-generated-key"])
def test_default_example_or_short_keys_are_refused_outside_dev_mode(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("CRM_API_KEYS", json.dumps({key: {"roles": ["admin"], "user": "x"}}))
    monkeypatch.delenv("CRM_DEV_MODE", raising=False)
    with pytest.raises(ValidationError, match="default, example or short key"):
        ProfileSettings()


def test_platform_and_service_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_API_KEYS", json.dumps(STRONG))
    monkeypatch.setenv("CRM_KAFKA_BOOTSTRAP", "kafka:29092")
    monkeypatch.setenv("CRM_PROFILE_DATABASE_URL", "postgresql+asyncpg://u@db/profile")
    monkeypatch.setenv("CRM_TIERING_PORT", "9102")
    monkeypatch.setenv("CRM_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("CRM_DATA_DIR", "/var/lib/crm")
    profile, tiering = ProfileSettings(), TieringSettings()
    assert profile.kafka_bootstrap == tiering.kafka_bootstrap == "kafka:29092"
    assert profile.database_url == "postgresql+asyncpg://u@db/profile"
    assert tiering.database_url == "sqlite+aiosqlite:////var/lib/crm/tiering.db"
    assert (profile.port, tiering.port) == (8001, 9102)
    assert profile.cors_origins == ["http://a.example", "http://b.example"]
    assert profile.consumer_group == "profile"
    assert profile.topic("purchase.recorded") == "purchase.recorded"


def test_a_malformed_key_grant_is_named_without_showing_the_key() -> None:
    from typer.testing import CliRunner

    from shared.cli import app

    key = "abcdefghijklmnopqrstu"
    environment = {"CRM_API_KEYS": json.dumps({key: {"role": "admin", "name": "ops"}})}
    result = CliRunner().invoke(app, ["serve", "profile"], env=environment)
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    for field in ("roles", "user"):
        assert (
            f"CRM_API_KEYS: abcd….{field}: Field required (got an object with 'role', 'name')"
            in output
        )
    assert key not in result.output
