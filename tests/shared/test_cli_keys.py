"""`crm keys add|list`: keys for account managers and others beside `crm up`'s admin key,
kept in the data folder and read by the services as CRM_API_KEYS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import app, load_or_create_api_keys
from shared.settings import ServiceSettings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CRM_API_KEYS", raising=False)
    return tmp_path


def test_a_key_added_for_an_account_manager_is_one_the_services_accept(data_dir: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["keys", "add", "--user", "mia", "--role", "account_manager"])
    assert added.exit_code == 0, added.output
    key = added.stdout.split(": ")[-1].split()[0]
    keys_json, admin_key = load_or_create_api_keys(data_dir)
    assert admin_key is not None and admin_key != key  # the admin key of `crm up` stays
    settings = ServiceSettings(api_keys=keys_json, database_url="sqlite+aiosqlite:///x.db")
    grant = settings.api_keys[key]
    assert (grant.user, grant.roles) == ("mia", ["account_manager"])
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0 and "mia" in listed.stdout
    assert key not in listed.stdout and admin_key not in listed.stdout  # shown masked


def test_an_unknown_role_or_keys_from_the_environment_change_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    wrong = runner.invoke(app, ["keys", "add", "--user", "mia", "--role", "manager"])
    assert wrong.exit_code == 2 and "account_manager" in wrong.output
    assert not (data_dir / "api-keys.json").exists()
    monkeypatch.setenv("CRM_API_KEYS", json.dumps({"k" * 20: {"roles": ["admin"], "user": "o"}}))
    from_env = runner.invoke(app, ["keys", "add", "--user", "mia", "--role", "analyst"])
    assert from_env.exit_code == 2 and "CRM_API_KEYS" in from_env.output
    assert not (data_dir / "api-keys.json").exists()
