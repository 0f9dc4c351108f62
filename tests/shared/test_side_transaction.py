"""`side_transaction`: on PostgreSQL a second connection's transaction, committed when
its block ends (before the session's own); none on SQLite, whose one writer is the
session."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.db import create_engine, session_factory, side_transaction
from tests.conftest import DatabaseFactory

metadata = sa.MetaData()
notes = sa.Table("side_notes", metadata, sa.Column("id", sa.Integer, primary_key=True))


class _Failed(Exception):
    pass


async def test_the_side_commits_at_the_end_of_its_block_or_not_at_all(
    backend: str, new_database: DatabaseFactory
) -> None:
    engine = create_engine(await new_database("tiering"))
    sessions = session_factory(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with sessions() as session, session.begin():
            async with side_transaction(session) as side:
                if backend == "sqlite":
                    assert side is None
                    return
                assert side is not None
                await side.execute(notes.insert(), [{"id": 1}])
            # Committed, while the session's own transaction is still open.
            async with engine.connect() as other:
                assert (await other.execute(sa.select(notes.c.id))).scalars().all() == [1]
            with pytest.raises(_Failed):
                async with side_transaction(session) as side:
                    assert side is not None
                    await side.execute(notes.insert(), [{"id": 2}])
                    raise _Failed
        async with engine.connect() as other:
            assert (await other.execute(sa.select(notes.c.id))).scalars().all() == [1]
    finally:
        await engine.dispose()
