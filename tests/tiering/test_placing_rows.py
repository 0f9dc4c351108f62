"""The rows a batch's placement reads include what the batch's handlers changed and have
not flushed (as an ORM read would), on both databases."""

from __future__ import annotations

import datetime as dt
import uuid

from services.tiering import repository as repo
from services.tiering.models import CustomerAggregate
from shared.db import create_engine, session_factory
from tests.conftest import DatabaseFactory


async def test_placing_rows_include_the_sessions_unflushed_changes(
    new_database: DatabaseFactory,
) -> None:
    engine = create_engine(await new_database("tiering"))
    sessions = session_factory(engine)
    customer_id, now = uuid.uuid4(), dt.datetime.now(dt.UTC)
    async with sessions() as session, session.begin():
        [key] = await repo.aggregates.new_keys(session, 1)
        session.add(CustomerAggregate(customer_id=customer_id, key=key, first_seen_at=now))
        await session.flush()
        held = await session.get(CustomerAggregate, customer_id)
        assert held is not None
        held.relationship_level = "strategic"  # not flushed
        held.erased = True
        [row] = await repo.aggregates.placing_rows(session, [customer_id])
    await engine.dispose()
    assert (row.key, row.customer_id) == (key, customer_id)
    assert (row.relationship_level, row.erased) == ("strategic", True)
