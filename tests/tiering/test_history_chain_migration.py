"""Revision 0015 over existing history: each customer's assignments, interleaved with
other customers' in the table, are found through its score row and the chain the upgrade
builds, latest first; the downgrade brings back the index by customer key."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import bindparam, text

from services.tiering import repository as repo
from shared.db import UTCDateTime, create_engine, migrate, session_factory
from tests.conftest import DatabaseFactory, migrations_dir
from tests.tiering.test_customer_keys import _downgrade, _rows

BEFORE = "0014_lifetime_from_days"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


async def test_each_customers_history_is_chained_latest_first(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", BEFORE)
    sqlite = "sqlite" in url
    customers = {1: uuid.uuid4(), 2: uuid.uuid4(), 3: uuid.uuid4()}
    policy = uuid.uuid4()
    engine = create_engine(url)
    async with session_factory(engine)() as session, session.begin():
        for key, customer in customers.items():
            await session.execute(
                text(
                    "INSERT INTO customer_aggregates (customer_id, key, known, erased, "
                    "first_seen_at, updated_at) VALUES (:id, :key, true, false, :now, :now)"
                ).bindparams(bindparam("now", type_=UTCDateTime())),
                {"id": customer.hex if sqlite else customer, "key": key, "now": NOW},
            )
        # Customer 1: D, then C, then A; customer 2: B; customer 3 never ranked.
        for key, previous, tier in ((1, None, "D"), (2, None, "B"), (1, "D", "C"), (1, "C", "A")):
            await session.execute(
                text(
                    "INSERT INTO tier_history (customer_id, customer_key, previous_tier, tier, "
                    "policy_id, policy_version, as_of, changed_at) VALUES (:id, :key, "
                    ":previous, :tier, :policy, 1, :now, :now)"
                ).bindparams(bindparam("now", type_=UTCDateTime())),
                {
                    "id": customers[key].hex if sqlite else customers[key],
                    "key": key,
                    "previous": previous,
                    "tier": tier,
                    "policy": policy.hex if sqlite else policy,
                    "now": NOW,
                },
            )
        for key, tier in ((1, "A"), (2, "B")):
            await session.execute(
                text("INSERT INTO customer_scores (key, tier) VALUES (:key, :tier)"),
                {"key": key, "tier": tier},
            )
    await engine.dispose()

    await migrate(url, migrations_dir("tiering"))
    chained = await _rows(url, "SELECT id, customer_key, previous_id FROM tier_history ORDER BY id")
    ids = [row.id for row in chained]
    assert [(row.customer_key, row.previous_id) for row in chained] == [
        (1, None),
        (2, None),
        (1, ids[0]),
        (1, ids[2]),
    ]
    latest = await _rows(url, "SELECT key, history_id FROM customer_scores ORDER BY key")
    assert [tuple(row) for row in latest] == [(1, ids[3]), (2, ids[1])]
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        first = await repo.history.for_customer(session, 1)
        assert [row["tier"] for row in first] == ["A", "C", "D"]
        assert [row["tier"] for row in await repo.history.for_customer(session, 1, limit=2)] == [
            "A",
            "C",
        ]
        assert [row["tier"] for row in await repo.history.for_customer(session, 2)] == ["B"]
        assert await repo.history.for_customer(session, 3) == []
        found = await repo.history.latest(session, [1, 2, 3])
        assert {key: row["tier"] for key, row in found.items()} == {1: "A", 2: "B"}
    await engine.dispose()

    await _downgrade(url, BEFORE)
    index = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tier_history'"
        if sqlite
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'tier_history'"
    )
    assert "ix_tier_history_customer_key" in {row[0] for row in await _rows(url, index)}
