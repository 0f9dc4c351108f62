"""`tier.changed` comes from the tier history: the relay publishes each row past the feed's
cursor once, in order, as the contract's event with the words the tier view shows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest

from services.tiering.feed import TierChangeFeed
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine, session_factory, utcnow
from shared.events import EventEnvelope, TierChanged
from shared.observability import Metrics
from shared.outbox import OutboxRelay
from tests.conftest import ADMIN, DatabaseFactory, query, read_topic, service_settings
from tests.tiering.conftest import Feed, announced
from tests.tiering.test_scores import ago


@asynccontextmanager
async def _relay(url: str, broker: EmbeddedBroker, prefix: str) -> AsyncIterator[OutboxRelay]:
    """A relay of the tier history, in batches of 3; stopped, and its engine disposed, after."""
    settings = service_settings(
        TieringSettings,
        database_url=url,
        bootstrap=broker.bootstrap,
        prefix=prefix,
        relay_batch_size=3,
    )
    engine = create_engine(url)
    relay = OutboxRelay(settings, engine, Metrics("test"), [TierChangeFeed()])
    try:
        yield relay
    finally:
        await relay.stop()
        await engine.dispose()


async def _bought(feed: Feed, count: int) -> list[uuid.UUID]:
    """`count` customers who bought 10, 100, 1000... three days ago, with no tier yet (the
    re-rank the test asks for gives them)."""
    customers = [feed.customer() for _ in range(count)]
    for n, customer in enumerate(customers):
        feed.purchase(customer, str(10 ** (n + 1)), ago(3))
    await feed.apply(batch_hook=False)
    return customers


async def test_the_relay_publishes_history_rows_once_in_order(
    broker: EmbeddedBroker,
    tiering_db: str,
    tiering: httpx.AsyncClient,
    feed: Feed,
    topic_prefix: str,
) -> None:
    customers = await _bought(feed, 5)
    response = await tiering.post("/v1/recompute", headers=ADMIN, json={})
    assert response.status_code == 200 and response.json()["changed"] == 5

    async with _relay(tiering_db, broker, topic_prefix) as relay:
        sent = [await relay.publish_batch() for _ in range(3)]  # batches of 3: 3, 2, 0
    assert sent == [3, 2, 0]
    assert await announced(tiering_db) == []
    messages = await read_topic(broker, f"{topic_prefix}tier.changed", 5)
    envelopes = [EventEnvelope.model_validate_json(m.value) for m in messages]
    assert {e.customer_id for e in envelopes} == set(customers)
    assert len({e.id for e in envelopes}) == 5
    history = await query(tiering_db, "SELECT id, event_id FROM tier_history ORDER BY id")
    assert [e.id for e in sorted(envelopes, key=lambda e: e.id)] == sorted(
        uuid.UUID(str(row.event_id)) for row in history
    )
    for message, envelope in zip(messages, envelopes, strict=True):
        assert message.key == str(envelope.customer_id).encode()
        data = TierChanged.model_validate(envelope.data)
        view = (
            await tiering.get(f"/v1/customers/{envelope.customer_id}/tier", headers=ADMIN)
        ).json()
        assert data.tier == view["tier"] and data.previous_tier is None
        assert data.reasons == view["reasons"] == view["history"][0]["reasons"]
        assert data.scores == view["history"][0]["scores"]
    (cursor,) = await query(tiering_db, "SELECT last_id FROM feed_cursors")
    assert cursor.last_id == history[-1].id


async def test_a_relay_that_stops_before_moving_the_cursor_sends_the_same_events_again(
    tiering_db: str, tiering: httpx.AsyncClient, feed: Feed
) -> None:
    customer = feed.customer()
    feed.purchase(customer, "10", ago(3))
    await feed.apply(batch_hook=False)  # the re-rank below gives the tiers
    await tiering.post("/v1/recompute", headers=ADMIN, json={})
    first = await announced(tiering_db)
    again = await announced(tiering_db)  # nothing acknowledged: the same event, same id
    assert len(first) == 1 and first == again
    (row,) = await query(tiering_db, "SELECT event_id FROM tier_history")
    assert uuid.UUID(orjson.loads(first[0].payload)["id"]) == uuid.UUID(str(row.event_id))


async def test_the_rules_after_events_wait_for_a_rerank_in_progress(
    new_database: DatabaseFactory,
) -> None:
    """A re-rank holds the ranking lock alone until it commits, and the rules after events
    wait for it."""
    url = await new_database("tiering")  # (SQLite: the one writer connection waits)
    feed = Feed(url)
    customer = feed.customer()
    feed.purchase(customer, "10", ago(3))
    await feed.apply()
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            await tiering_service.ensure_default_policy(session)
        async with sessions() as holder, holder.begin():
            await tiering_service.recompute(holder, None)  # holds the lock until commit

            async def reassess() -> None:
                async with sessions() as session, session.begin():
                    await tiering_service.reassess(session, [customer])

            waiting = asyncio.create_task(reassess())
            await asyncio.sleep(0.5)
            assert not waiting.done()
        await asyncio.wait_for(waiting, 10)
    finally:
        await engine.dispose()


async def test_placements_run_side_by_side_and_write_history_in_turn(
    backend: str, new_database: DatabaseFactory
) -> None:
    """Placements after events share the ranking lock, so another customer's placement
    does not wait for an open one; writing history is one at a time until commit, so rows
    commit in id order for the feed's cursor."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time; the locks are PostgreSQL's")
    url = await new_database("tiering")
    feed = Feed(url)
    steady, first, second = feed.customer(), feed.customer(), feed.customer()
    feed.purchase(steady, "10", ago(3))
    await feed.apply(batch_hook=False)
    engine = create_engine(url)
    sessions = session_factory(engine)
    before = tiering_service.full_ranking_below
    tiering_service.full_ranking_below = 0  # placed against the ranking, not re-ranked
    try:
        async with sessions() as session, session.begin():
            await tiering_service.ensure_default_policy(session)
            await tiering_service.recompute(session, None)
        for customer in (first, second):  # far above every band edge: a new tier each
            feed.purchase(customer, "900000", ago(1))
        await feed.apply(batch_hook=False)

        async def place(customer: uuid.UUID) -> None:
            async with sessions() as session, session.begin():
                await tiering_service.reassess(session, [customer])

        async with sessions() as holder, holder.begin():
            await tiering_service.reassess(holder, [first])  # a change: history written
            await asyncio.wait_for(place(steady), 10)  # no change: does not wait
            waiting = asyncio.create_task(place(second))  # a change: waits its turn
            await asyncio.sleep(0.5)
            assert not waiting.done()
        await asyncio.wait_for(waiting, 10)
    finally:
        tiering_service.full_ranking_below = before
        await engine.dispose()
    rows = await query(  # the changes after the ranking
        url, "SELECT customer_id FROM tier_history WHERE previous_tier IS NOT NULL ORDER BY id"
    )
    assert [uuid.UUID(str(row.customer_id)) for row in rows] == [first, second]


async def test_a_rankings_rows_leave_what_they_share_to_it_and_still_say_it(
    broker: EmbeddedBroker,
    tiering_db: str,
    tiering: httpx.AsyncClient,
    feed: Feed,
    topic_prefix: str,
) -> None:
    """Policy, version, moment, when written, customer count and correlation id are the
    ranking's row's, once; the events and the history read them from there."""
    await _bought(feed, 3)
    response = await tiering.post(
        "/v1/recompute", headers={**ADMIN, "X-Correlation-ID": "rank-all-1"}, json={}
    )
    assert response.status_code == 200 and response.json()["changed"] == 3
    policy = response.json()

    (ranking,) = await query(tiering_db, "SELECT * FROM rankings")
    assert (ranking.policy_version, ranking.correlation_id, ranking.changes) == (
        policy["policy_version"],
        "rank-all-1",
        3,
    )
    rows = await query(
        tiering_db,
        "SELECT ranking_id, policy_id, policy_version, as_of, changed_at, customers, "
        "correlation_id FROM tier_history",
    )
    assert {tuple(row) for row in rows} == {(ranking.id, None, None, None, None, None, None)}

    async with _relay(tiering_db, broker, topic_prefix) as relay:
        assert await relay.publish_batch() == 3
    messages = await read_topic(broker, f"{topic_prefix}tier.changed", 3)
    for message in messages:
        envelope = EventEnvelope.model_validate_json(message.value)
        data = TierChanged.model_validate(envelope.data)
        assert envelope.correlation_id == "rank-all-1"
        assert str(data.policy_id) == policy["policy_id"]
        assert data.policy_version == policy["policy_version"]
        view = (
            await tiering.get(f"/v1/customers/{envelope.customer_id}/tier", headers=ADMIN)
        ).json()
        (entry,) = view["history"]
        assert entry["policy_id"] == policy["policy_id"]
        assert entry["as_of"] == policy["as_of"]
        assert entry["changed_at"] == envelope.occurred_at.isoformat().replace("+00:00", "Z")
        assert data.reasons == entry["reasons"]
        assert any("of 3" in reason for reason in entry["reasons"]), entry["reasons"]


class _Abandoned(Exception):
    pass


async def test_a_ranking_that_does_not_commit_announces_nothing(
    backend: str,
    broker: EmbeddedBroker,
    tiering_db: str,
    tiering: httpx.AsyncClient,
    feed: Feed,
    topic_prefix: str,
) -> None:
    """On PostgreSQL a ranking's history rows are written through a second connection,
    beside its score rows, and commit first; if the ranking's own transaction then fails,
    those rows stay invisible: no event, no history, and the next ranking is announced
    alone."""
    customers = await _bought(feed, 3)
    engine = create_engine(tiering_db)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            await tiering_service.ensure_default_policy(session)
        with pytest.raises(_Abandoned):
            async with sessions() as session, session.begin():
                outcome = await tiering_service.apply_ranking(session, utcnow())
                assert outcome.changed == 3
                raise _Abandoned
    finally:
        await engine.dispose()
    written = await query(tiering_db, "SELECT count(*) AS n FROM tier_history")
    assert written[0].n == (3 if backend == "postgresql" else 0)  # beside, on PostgreSQL
    view = (await tiering.get(f"/v1/customers/{customers[0]}/tier", headers=ADMIN)).json()
    assert view["tier"] is None and view["history"] == []

    async with _relay(tiering_db, broker, topic_prefix) as relay:
        assert await relay.publish_batch() == 0
        response = await tiering.post("/v1/recompute", headers=ADMIN, json={})
        assert response.status_code == 200 and response.json()["changed"] == 3
        assert [await relay.publish_batch() for _ in range(3)] == [3, 0, 0]
    messages = await read_topic(broker, f"{topic_prefix}tier.changed", 3)
    assert {EventEnvelope.model_validate_json(m.value).customer_id for m in messages} == set(
        customers
    )
    view = (await tiering.get(f"/v1/customers/{customers[0]}/tier", headers=ADMIN)).json()
    assert view["tier"] is not None and len(view["history"]) == 1
