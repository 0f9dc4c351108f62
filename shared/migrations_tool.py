"""Write a new migration for a service by comparing its models with a migrated database.

Developer tool: `python -m shared.migrations_tool profile "add contacts"`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from shared.db import alembic_config, create_engine, migrate


def _revision(connection: Connection, migrations_dir: Path, message: str) -> None:
    config = alembic_config(migrations_dir)
    config.attributes["connection"] = connection
    command.revision(config, message=message, autogenerate=True)


async def new_revision(service: str, message: str) -> None:
    module = importlib.import_module(f"services.{service}.app")
    migrations_dir: Path = module.DEFINITION.migrations_dir
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/autogen.db"
        await migrate(url, migrations_dir)
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_revision, migrations_dir, message)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(new_revision(sys.argv[1], sys.argv[2]))
