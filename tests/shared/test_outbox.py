"""The outbox relay: publishes in order per customer, marks rows sent, leads by a lease;
and CORS for the internal frontends."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine, session_factory
from shared.events import PurchaseRecorded
from shared.lease import leases
from shared.observability import Metrics
from shared.outbox import (
    OutboxRelay,
    event_json,
    idempotency_keys,
    inbox,
    outbox,
    prune,
    record_event,
)
from tests.conftest import DatabaseFactory, read_topic, running, service_settings


def purchase(n: int) -> PurchaseRecorded:
    return PurchaseRecorded(
        purchase_id=uuid.uuid4(),
        amount=f"{n}.00",
        currency="CNY",
        quantity="1",
        purchased_at="2026-11-01T00:00:00Z",
        sku=f"seq-{n}",
    )


async def record_purchases(engine: AsyncEngine, customers: list[uuid.UUID], count: int) -> None:
    """`count` purchase events in the outbox, in one transaction, the customers in turn."""
    async with session_factory(engine)() as session, session.begin():
        for n in range(count):
            await record_event(
                session,
                producer="profile",
                event_type="purchase.recorded",
                customer_id=customers[n % len(customers)],
                data=purchase(n),
            )


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(outbox)
        return int((await conn.execute(query.where(outbox.c.published_at.is_(None)))).scalar_one())


async def test_relay_publishes_in_order_and_marks_rows_sent(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = service_settings(
        ProfileSettings,
        database_url=await new_database("profile"),
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        relay_batch_size=7,
    )
    engine = create_engine(settings.database_url)
    customers = [uuid.uuid4(), uuid.uuid4()]
    await record_purchases(engine, customers, 40)
    metrics = Metrics("test")
    relay = OutboxRelay(settings, engine, metrics)

    def backlog() -> float | None:
        return metrics.registry.get_sample_value("crm_outbox_backlog", {"source": "outbox"})

    try:
        await relay.measure_backlog()
        assert backlog() == 40  # all of them, not one batch's worth
        while await relay.publish_batch():
            pass
        relay._last_measure = -1e9  # measure again now, not in a few seconds
        await relay.measure_backlog()
        assert backlog() == 0
        age = metrics.registry.get_sample_value(
            "crm_outbox_backlog_age_seconds", {"source": "outbox"}
        )
        assert age == 0
    finally:
        await relay.stop()
    left = await unsent(engine)
    await engine.dispose()
    assert left == 0

    seen: dict[str, list[int]] = {str(c): [] for c in customers}
    for message in await read_topic(broker, settings.topic("purchase.recorded"), 40):
        envelope = json.loads(message.value)
        assert message.key.decode() == envelope["customer_id"]
        seen[envelope["customer_id"]].append(int(envelope["data"]["sku"][4:]))
    assert seen[str(customers[0])] == list(range(0, 40, 2))
    assert seen[str(customers[1])] == list(range(1, 40, 2))


async def test_one_relay_leads_by_a_lease_that_passes_on_when_it_expires_or_is_released(
    new_database: DatabaseFactory,
) -> None:
    settings = service_settings(
        ProfileSettings,
        database_url=await new_database("profile"),
        bootstrap="127.0.0.1:1",  # nothing answers: a relay that tried to send would fail
        prefix="x.",
    )
    engine = create_engine(settings.database_url)
    await record_purchases(engine, [uuid.uuid4()], 1)
    first, second = (OutboxRelay(settings, engine, Metrics("test")) for _ in range(2))
    try:
        assert await first.lease.hold()
        assert await first.lease.hold()  # renewing keeps it, in the same epoch
        assert first.lease.epoch == 1
        assert not await second.lease.hold()
        assert await second.publish_batch() == 0  # not the leader: sends nothing

        # The leader stalls past its lease (as a killed or frozen replica would, whatever
        # happened to its connections): the other replica takes over in a new epoch...
        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                sa.update(leases).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1))
            )
        assert await second.lease.hold()
        assert second.lease.epoch == 2
        # ... and the old leader, checking before it publishes, finds it has lost it.
        first.lease._valid_until = None  # its own view has run out too
        assert await first.publish_batch() == 0
        assert not first.lease.valid()

        await second.stop()  # releasing passes the lease on at once
        assert await first.lease.hold()
        assert first.lease.epoch == 3
    finally:
        await first.stop()
        await second.stop()
        await engine.dispose()


async def test_cors_allows_configured_frontends_only(
    new_database: DatabaseFactory,
) -> None:
    settings = service_settings(
        ProfileSettings,
        database_url=await new_database("profile"),
        bootstrap="127.0.0.1:1",
        prefix="x.",
        run_background=False,
        cors_origins=["https://crm.internal"],
    )
    async with running(create_app(settings)) as client:
        allowed = await client.options(
            "/v1/customers",
            headers={"Origin": "https://crm.internal", "Access-Control-Request-Method": "POST"},
        )
        denied = await client.options(
            "/v1/customers",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.headers["access-control-allow-origin"] == "https://crm.internal"
    assert "access-control-allow-origin" not in denied.headers


def test_event_json_writes_ids_times_and_decimals_as_pydantic_json_mode_does() -> None:
    class DriverUUID(uuid.UUID):
        """Database drivers hand back UUID subclasses (asyncpg does)."""

    customer = uuid.uuid4()
    moment = dt.datetime(2026, 11, 25, 8, 30, 0, 120000, tzinfo=dt.UTC)
    written = event_json(
        {"customer": DriverUUID(str(customer)), "at": moment, "amount": Decimal("12.50")}
    )
    assert written == (
        f'{{"customer":"{customer}","at":"2026-11-25T08:30:00.120000Z","amount":"12.50"}}'
    )
    with pytest.raises(TypeError):
        event_json({"thing": object()})


async def test_prune_drops_what_has_served_its_time_and_keeps_the_rest(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("profile")
    settings = service_settings(ProfileSettings, database_url=url, bootstrap="x:1", prefix="p.")
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    old, recent = now - dt.timedelta(days=20), now - dt.timedelta(hours=1)
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for at, published in ((old, old), (recent, recent), (old, None)):
                await session.execute(
                    outbox.insert().values(
                        event_id=uuid.uuid4(),
                        event_type="customer.updated",
                        message_key="k",
                        payload="{}",
                        created_at=at,
                        published_at=published,
                    )
                )
            for at in (old, recent):
                await session.execute(
                    inbox.insert().values(event_id=uuid.uuid4(), event_type="t", handled_at=at)
                )
                await session.execute(
                    idempotency_keys.insert().values(
                        scope="s", key=str(at), request_hash="h", created_at=at
                    )
                )
        async with session_factory(engine)() as session, session.begin():
            await prune(session, settings, now)
        async with engine.connect() as conn:
            left = {
                table: (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar()
                for table in (outbox, inbox, idempotency_keys)
            }
            unpublished = (
                await conn.execute(
                    sa.select(sa.func.count()).where(outbox.c.published_at.is_(None))
                )
            ).scalar()
    finally:
        await engine.dispose()
    # The recent published row and the unpublished old one stay; one of each other.
    assert left == {outbox: 2, inbox: 1, idempotency_keys: 1}
    assert unpublished == 1


async def test_a_backlog_of_an_import_goes_out_in_one_round(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    """A round's fixed costs (two transactions, a wait for the acknowledgements) are paid
    per thousands of events, so the relay keeps up with an import."""
    settings = service_settings(
        ProfileSettings,
        database_url=await new_database("profile"),
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
    )
    engine = create_engine(settings.database_url)
    await record_purchases(engine, [uuid.uuid4()], 1200)
    relay = OutboxRelay(settings, engine, Metrics("test"))
    try:
        assert await relay.publish_batch() == 1200
        assert await relay.publish_batch() == 0
    finally:
        await relay.stop()
    left = await unsent(engine)
    await engine.dispose()
    assert left == 0
    skus = [
        json.loads(message.value)["data"]["sku"]
        for message in await read_topic(broker, settings.topic("purchase.recorded"), 1200)
    ]
    assert skus == [f"seq-{n}" for n in range(1200)]
