"""Each service's migrations produce exactly the schema its models describe."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from shared.db import create_engine
from tests.conftest import DatabaseFactory


def _differences(connection: Connection, metadata: Any) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", ["profile", "tiering", "outreach", "complaints"])
async def test_migrations_match_models(new_database: DatabaseFactory, service: str) -> None:
    url = await new_database(service)
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata
    engine = create_engine(url)
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences, metadata)
    await engine.dispose()
    assert differences == []
