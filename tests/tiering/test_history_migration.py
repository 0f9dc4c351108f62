"""Revision 0005 over existing history: old rows keep their words, give their band figures
to the changes that follow, and are not announced a second time; the downgrade keeps them."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import text

from services.tiering import repository as repo
from services.tiering.service import TieringService
from shared.access import access_of
from shared.auth import Principal
from shared.db import create_engine, migrate, session_factory
from tests.conftest import DatabaseFactory, migrations_dir
from tests.tiering.conftest import announced
from tests.tiering.test_customer_keys import _downgrade, _rows

BEFORE_FIGURES = "5d2e8b4c1a90"
ADMIN_PRINCIPAL = Principal("admin", frozenset({"admin"}))
LEGACY_SCORES = {
    "metric": "revenue",
    "window_days": 365,
    "value": "1234.56",
    "rank": 2,
    "customers": 6,
    "cumulative_share": 0.4321,
    "band_tier": "A",
    "rules": {},
}


async def test_old_history_rows_keep_their_words_and_give_their_figures(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", BEFORE_FIGURES)
    customer = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await TieringService().ensure_default_policy(session)
        policy = await repo.policies.active(session)
        assert policy is not None
        sqlite = "sqlite" in url
        await session.execute(
            text(
                "INSERT INTO customer_aggregates (customer_id, key, known, erased, revenue, "
                "quantity, collected, purchase_count, first_seen_at, updated_at) "
                "VALUES (:id, 7, true, false, 0, 0, 0, 0, :now, :now)"
            ),
            {"id": customer.hex if sqlite else customer, "now": now},
        )
        # Its tier as that revision kept it, beside the history row that gave it.
        await session.execute(text("INSERT INTO customer_scores (key, tier) VALUES (7, 'A')"))
        await session.execute(
            text(
                "INSERT INTO tier_history (customer_id, previous_tier, tier, policy_id, "
                "policy_version, scores, reasons, as_of, changed_at) VALUES (:id, NULL, 'A', "
                ":policy, 1, :scores, :reasons, :now, :now)"
            ),
            {
                "id": customer.hex if sqlite else customer,
                "policy": policy.id.hex if sqlite else policy.id,
                "scores": json.dumps(LEGACY_SCORES),
                "reasons": '["A: the words of an older version"]',
                "now": now,
            },
        )
    await engine.dispose()

    await migrate(url, migrations_dir("tiering"))
    (row,) = await _rows(
        url,
        "SELECT id, customer_key, band_tier, value, rank, customers, cumulative_share "
        "FROM tier_history",
    )
    assert tuple(row)[1:] == (7, "A", 123456, 2, 6, 0.4321)
    (cursor,) = await _rows(url, "SELECT feed, last_id FROM feed_cursors")
    assert tuple(cursor) == ("tier.changed", row.id)  # announced through the outbox already
    assert await announced(url) == []
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        view = await TieringService().tier_view(session, customer, access_of(ADMIN_PRINCIPAL))
    await engine.dispose()
    assert view.reasons == ["A: the words of an older version"]
    assert view.history[0].scores == LEGACY_SCORES

    await _downgrade(url, BEFORE_FIGURES)
    (kept,) = await _rows(url, "SELECT scores, reasons FROM tier_history")
    loaded = [json.loads(value) if isinstance(value, str) else value for value in kept]
    assert loaded == [LEGACY_SCORES, ["A: the words of an older version"]]
