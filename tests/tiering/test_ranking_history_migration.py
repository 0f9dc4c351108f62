"""Revision 0016: a ranking's history rows name their ranking and leave what they share
to it; the downgrade gives those rows their figures back before requiring them again."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import bindparam, text

from shared.db import UTCDateTime, create_engine, migrate, session_factory
from tests.conftest import DatabaseFactory, migrations_dir
from tests.tiering.test_customer_keys import _downgrade, _rows

BEFORE = "0015_history_chain"
AS_OF = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
RANKED = dt.datetime(2026, 12, 1, 8, 0, 5, tzinfo=dt.UTC)
PLACED = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)


async def test_the_downgrade_gives_a_rankings_rows_their_shared_figures_back(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering")
    sqlite = "sqlite" in url
    policy, customer = uuid.uuid4(), uuid.uuid4()
    ids = {
        "policy": policy.hex if sqlite else policy,
        "customer": customer.hex if sqlite else customer,
    }
    moments = [bindparam(name, type_=UTCDateTime()) for name in ("as_of", "ranked", "placed")]
    engine = create_engine(url)
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO rankings (id, policy_id, policy_version, as_of, ranked_at, "
                "customers, total, cutoffs, correlation_id, changes) VALUES (7, :policy, 3, "
                ":as_of, :ranked, 250, 1000, '[]', 'rank-7', 1)"
            ).bindparams(*moments[:2]),
            {**ids, "as_of": AS_OF, "ranked": RANKED},
        )
        # One row of that ranking (what it shares left to it), one of a later placement.
        await session.execute(
            text(
                "INSERT INTO tier_history (id, customer_id, customer_key, tier, ranking_id) "
                "VALUES (1, :customer, 1, 'B', 7)"
            ),
            ids,
        )
        await session.execute(
            text(
                "INSERT INTO tier_history (id, customer_id, customer_key, previous_id, "
                "previous_tier, tier, policy_id, policy_version, as_of, changed_at) VALUES "
                "(2, :customer, 1, 1, 'B', 'A', :policy, 3, :placed, :placed)"
            ).bindparams(moments[2]),
            {**ids, "placed": PLACED},
        )
    await engine.dispose()

    await _downgrade(url, BEFORE)
    rows = await _rows(
        url,
        "SELECT id, policy_version, customers, correlation_id, as_of, changed_at "
        "FROM tier_history ORDER BY id",
    )
    assert [(row.id, row.policy_version, row.customers, row.correlation_id) for row in rows] == [
        (1, 3, 250, "rank-7"),
        (2, 3, None, None),
    ]
    assert [(_moment(row.as_of), _moment(row.changed_at)) for row in rows] == [
        (AS_OF, RANKED),
        (PLACED, PLACED),
    ]
    policies = await _rows(url, "SELECT DISTINCT policy_id FROM tier_history")
    assert [str(uuid.UUID(str(row.policy_id))) for row in policies] == [str(policy)]

    await migrate(url, migrations_dir("tiering"))  # and up again
    columns = await _rows(url, "SELECT ranking_id FROM tier_history ORDER BY id")
    assert [row.ranking_id for row in columns] == [None, None]


def _moment(value: dt.datetime | str) -> dt.datetime:
    """A timestamp as a raw read returns it (SQLite: naive UTC text)."""
    found = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return found.replace(tzinfo=dt.UTC) if found.tzinfo is None else found
