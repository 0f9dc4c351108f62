"""Customer keys: every customer gets its own small number, the daily rows move to it
when the migration runs over existing data, and back when it is undone."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.tiering.repository import aggregates
from shared.db import alembic_config, create_engine, migrate, session_factory
from tests.conftest import DatabaseFactory, migrations_dir

BEFORE_KEYS = "7bb06399a7a1"


async def _downgrade(url: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(migrations_dir("tiering"))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def _rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def test_new_customers_get_distinct_keys(new_database: DatabaseFactory) -> None:
    url = await new_database("tiering")
    engine = create_engine(url)
    customers = [uuid.uuid4() for _ in range(3)]
    async with session_factory(engine)() as session, session.begin():
        for customer in customers:
            await aggregates.get_or_create(session, customer, dt.datetime.now(dt.UTC))
    await engine.dispose()
    keys = [row[0] for row in await _rows(url, "SELECT key FROM customer_aggregates")]
    assert len(keys) == 3
    assert len(set(keys)) == 3


async def test_migration_keys_existing_daily_rows_and_back(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", BEFORE_KEYS)
    first, second = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(url)
    async with engine.begin() as conn:
        for customer in (first, second):
            await conn.execute(
                text(
                    "INSERT INTO customer_aggregates (customer_id, known, erased, revenue, "
                    "quantity, collected, purchase_count, scores, reasons, at_risk, "
                    "first_seen_at, updated_at) VALUES (:id, true, false, 0, 0, 0, 0, '{}', "
                    "'[]', false, :now, :now)"
                ),
                {
                    "id": customer.hex if "sqlite" in url else customer,
                    "now": dt.datetime.now(dt.UTC),
                },
            )
        for customer, day, revenue in (
            (first, 20000, 500),
            (first, 20001, 700),
            (second, 20000, 900),
        ):
            await conn.execute(
                text(
                    "INSERT INTO daily_activity (customer_id, day, revenue, quantity, purchases, "
                    "collected) VALUES (:id, :day, :revenue, 1000, 1, 0)"
                ),
                {
                    "id": customer.hex if "sqlite" in url else customer,
                    "day": day,
                    "revenue": revenue,
                },
            )
    await engine.dispose()

    await migrate(url, migrations_dir("tiering"))
    keyed = await _rows(
        url,
        "SELECT a.customer_id, d.day, d.revenue FROM daily_activity d "
        "JOIN customer_aggregates a ON a.key = d.customer_key ORDER BY d.revenue",
    )
    assert [(uuid.UUID(str(c)), day, revenue) for c, day, revenue in keyed] == [
        (first, 20000, 500),
        (first, 20001, 700),
        (second, 20000, 900),
    ]
    keys = await _rows(url, "SELECT key FROM customer_aggregates")
    assert len({row[0] for row in keys}) == 2

    await _downgrade(url, BEFORE_KEYS)
    restored = await _rows(
        url, "SELECT customer_id, day, revenue FROM daily_activity ORDER BY revenue"
    )
    assert [(uuid.UUID(str(c)), day, revenue) for c, day, revenue in restored] == [
        (first, 20000, 500),
        (first, 20001, 700),
        (second, 20000, 900),
    ]


BEFORE_SCORE_TABLE = "3c1f0a7d9e52"


async def test_migration_moves_scores_to_their_table_and_back(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", BEFORE_SCORE_TABLE)
    scored, unscored = uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    engine = create_engine(url)
    async with engine.begin() as conn:
        for key, customer, tier, risk, flagged in (
            (1, scored, "A", 0.75, True),
            (2, unscored, None, None, False),
        ):
            await conn.execute(
                text(
                    "INSERT INTO customer_aggregates (customer_id, key, known, erased, revenue, "
                    "quantity, collected, purchase_count, tier, scores, reasons, band_tier, "
                    "rfm_r, rfm_f, rfm_m, value_segment, churn_risk, at_risk, first_seen_at, "
                    "updated_at) VALUES (:id, :key, true, false, 0, 0, 0, 0, :tier, '{}', '[]', "
                    ":tier, :rfm, :rfm, :rfm, :segment, :risk, :flagged, :now, :now)"
                ),
                {
                    "id": customer.hex if "sqlite" in url else customer,
                    "key": key,
                    "tier": tier,
                    "rfm": 5 if tier else None,
                    "segment": "high" if tier else None,
                    "risk": risk,
                    "flagged": flagged,
                    "now": now,
                },
            )
        # The current tier's reasons live in the customer's latest history row.
        for reasons in ('["B: old"]', '["A: in the top 1%"]'):
            await conn.execute(
                text(
                    "INSERT INTO tier_history (customer_id, previous_tier, tier, policy_id, "
                    "policy_version, scores, reasons, as_of, changed_at) VALUES (:id, NULL, "
                    "'A', :policy, 1, '{\"rank\": 1}', :reasons, :now, :now)"
                ),
                {
                    "id": scored.hex if "sqlite" in url else scored,
                    "policy": uuid.uuid4().hex if "sqlite" in url else uuid.uuid4(),
                    "reasons": reasons,
                    "now": now,
                },
            )
    await engine.dispose()

    await migrate(url, migrations_dir("tiering"))
    moved = await _rows(
        url,
        "SELECT key, tier, band_tier, rfm_r, rfm_f, rfm_m, value_segment, churn_risk, at_risk "
        "FROM customer_scores ORDER BY key",
    )
    assert [tuple(row) for row in moved] == [(1, "A", "A", 5, 5, 5, "high", 0.75, True)]

    await _downgrade(url, BEFORE_SCORE_TABLE)
    restored = await _rows(
        url,
        "SELECT key, tier, band_tier, rfm_r, value_segment, churn_risk, at_risk, reasons "
        "FROM customer_aggregates ORDER BY key",
    )
    rows = [
        (*row[:-1], json.loads(row[-1]) if isinstance(row[-1], str) else row[-1])
        for row in restored
    ]
    assert rows == [
        (1, "A", "A", 5, "high", 0.75, True, ["A: in the top 1%"]),
        (2, None, None, None, None, None, False, []),
    ]


async def test_a_poll_keys_new_customers_at_once_and_known_ones_keep_theirs(
    new_database: DatabaseFactory, monkeypatch: Any
) -> None:
    """`customer_keys` makes the rows of a poll's new customers in one statement; a
    customer whose row appears meanwhile (made by another transaction after the lookup)
    keeps the key it was given there."""
    from services.tiering import ingest

    url = await new_database("tiering")
    engine = create_engine(url)
    sessions = session_factory(engine)
    seen, meanwhile, *new = [uuid.uuid4() for _ in range(5)]
    now = dt.datetime.now(dt.UTC)
    async with sessions() as session, session.begin():
        for customer in (seen, meanwhile):
            await aggregates.get_or_create(session, customer, now)

    async def stored_keys() -> dict[uuid.UUID, int]:
        rows = await _rows(url, "SELECT customer_id, key FROM customer_aggregates")
        return {uuid.UUID(str(customer_id)): key for customer_id, key in rows}

    before = await stored_keys()
    lookup = ingest._stored
    lookups: list[list[uuid.UUID]] = []

    async def missing_meanwhile(session: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
        lookups.append(ids)
        found = await lookup(session, ids)
        if len(lookups) == 1:  # the first lookup ran before the other transaction committed
            found.pop(meanwhile)
        return found

    monkeypatch.setattr(ingest, "_stored", missing_meanwhile)
    async with sessions() as session, session.begin():
        keys = await ingest.customer_keys(session, dict.fromkeys([seen, meanwhile, *new], now))
    await engine.dispose()
    after = await stored_keys()
    assert len(after) == 5
    assert after == keys
    for customer in (seen, meanwhile):
        assert keys[customer] == before[customer]
    assert len(set(keys.values())) == 5
    assert lookups[1:] == [[meanwhile]]  # only the one made meanwhile is looked up again
