"""Migrations are a step of their own: two runs at once are safe, and a service refuses to
start against a schema older than it needs, naming the command that fixes it."""

from __future__ import annotations

import asyncio

import pytest

from services.tiering.app import create_app
from services.tiering.settings import TieringSettings
from shared.db import SchemaTooOld, migrate
from tests.conftest import DatabaseFactory, migrations_dir, query, running, service_settings

OLDER = "0011_field_stamps"


async def test_a_service_refuses_an_older_schema_until_migrated(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", OLDER)
    settings = service_settings(
        TieringSettings, database_url=url, bootstrap="127.0.0.1:1", prefix="none.",
        run_background=False,
    )  # fmt: skip
    with pytest.raises(SchemaTooOld, match=rf"at {OLDER}.*crm migrate --service tiering"):
        async with running(create_app(settings)):
            pass
    await migrate(url, migrations_dir("tiering"))
    async with running(create_app(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_two_migration_runs_at_once_are_safe(
    backend: str, new_database: DatabaseFactory
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time; the lock is PostgreSQL's")
    url = await new_database("tiering", "1462a0d8f041")  # the first migration only
    await asyncio.gather(*(migrate(url, migrations_dir("tiering")) for _ in range(2)))
    [row] = await query(url, "SELECT version_num FROM alembic_version")
    assert (
        row.version_num
        == sorted(path.stem for path in migrations_dir("tiering").glob("versions/0*.py"))[-1]
    )


async def test_wait_for_schema_waits_for_the_migration_and_migrates_nothing(
    new_database: DatabaseFactory,
) -> None:
    from typer.testing import CliRunner

    from shared.cli import app

    url = await new_database("tiering", OLDER)
    environment = {"CRM_TIERING_DATABASE_URL": url, "CRM_DEV_MODE": "true"}
    command = ["wait-for-schema", "tiering", "--timeout", "0"]
    runner = CliRunner()
    waited = await asyncio.to_thread(runner.invoke, app, command, env=environment)
    assert waited.exit_code == 1
    assert "crm migrate --service tiering" in waited.output
    [row] = await query(url, "SELECT version_num FROM alembic_version")
    assert row.version_num == OLDER  # it waited; it did not migrate
    await migrate(url, migrations_dir("tiering"))
    done = await asyncio.to_thread(runner.invoke, app, command, env=environment)
    assert done.exit_code == 0, done.output
    assert "schema current" in done.output
