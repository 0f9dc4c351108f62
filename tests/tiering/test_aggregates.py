"""Tiering's aggregates, fed by the handlers on a real database, and its tier view."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from services.tiering.app import create_app
from services.tiering.consumers import BULK_HANDLERS, HANDLERS, reassess_customers
from services.tiering.models import CustomerAggregate
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine, session_factory
from shared.events import EventEnvelope, parse_data
from tests.conftest import ADMIN, ANALYST, DatabaseFactory, running, service_settings


def envelope(customer_id: uuid.UUID, event_type: str, data: dict[str, object]) -> EventEnvelope:
    return EventEnvelope(
        id=uuid.uuid4(),
        type=event_type,
        occurred_at=dt.datetime.now(dt.UTC),
        producer="profile",
        customer_id=customer_id,
        data=data,
    )


def purchase(amount: str, when: str, quantity: str = "1") -> dict[str, object]:
    return {
        "purchase_id": str(uuid.uuid4()),
        "amount": amount,
        "currency": "CNY",
        "quantity": quantity,
        "purchased_at": when,
    }


async def test_aggregates_fold_purchases_in_any_order_refunds_and_free_items(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    url = await new_database("tiering")
    engine = create_engine(url)
    sessions = session_factory(engine)
    customer = uuid.uuid4()
    events = [
        envelope(customer, "customer.created", {"name": "A", "kind": "person"}),
        envelope(customer, "purchase.recorded", purchase("100.10", "2026-05-02T00:00:00Z", "2")),
        envelope(customer, "purchase.recorded", purchase("50.00", "2026-03-01T00:00:00Z")),
        envelope(customer, "purchase.recorded", purchase("-20.05", "2026-06-01T00:00:00Z")),
        envelope(customer, "purchase.recorded", purchase("0", "2026-04-01T00:00:00Z")),  # free
    ]
    for event in events:
        async with sessions() as session, session.begin():
            await HANDLERS[event.type](session, event, parse_data(event))
            await reassess_customers(session, [event])
    await engine.dispose()

    settings = service_settings(
        TieringSettings, database_url=url, bootstrap=broker.bootstrap, prefix=topic_prefix
    )
    async with running(create_app(settings)) as client:
        view = (await client.get(f"/v1/customers/{customer}/tier", headers=ANALYST)).json()
        assert view["tier"] is None and view["history"] == []
        aggregates = view["aggregates"]
        assert Decimal(aggregates["revenue"]) == Decimal("130.05")
        # 2 + 1 + 1 (the free item) bought, 1 given back with the refund.
        assert Decimal(aggregates["quantity"]) == Decimal(3)
        # The refund lowers revenue but is no purchase: neither counted nor the latest.
        assert aggregates["purchase_count"] == 3  # 100.10, 50.00 and the free item
        assert aggregates["first_purchase_at"].startswith("2026-03-01")
        assert aggregates["last_purchase_at"].startswith("2026-05-02")

        unknown = await client.get(f"/v1/customers/{uuid.uuid4()}/tier", headers=ADMIN)
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        denied = await client.get(f"/v1/customers/{customer}/tier")
        assert denied.status_code == 401


async def test_customer_known_before_any_purchase(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering")
    engine = create_engine(url)
    customer = uuid.uuid4()
    event = envelope(customer, "customer.created", {"name": "B", "kind": "company"})
    async with session_factory(engine)() as session, session.begin():
        await HANDLERS[event.type](session, event, parse_data(event))
        await reassess_customers(session, [event])
    settings = service_settings(
        TieringSettings,
        database_url=url,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
    )
    await engine.dispose()
    async with running(create_app(settings)) as client:
        view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
    assert view.status_code == 200
    assert view.json()["aggregates"]["purchase_count"] == 0
    assert view.json()["aggregates"]["revenue"] == "0.00"


async def test_a_key_read_in_a_transaction_that_rolls_back_is_not_reused(
    new_database: DatabaseFactory,
) -> None:
    """Keys are remembered across batches only once their transaction commits: a rolled
    back one may have read the row it was making, whose key SQLite gives to the next new
    customer."""
    url = await new_database("tiering")
    engine = create_engine(url)
    sessions = session_factory(engine)
    first, second = uuid.uuid4(), uuid.uuid4()
    bought = [
        envelope(first, "customer.created", {"name": "A", "kind": "person"}),
        envelope(first, "purchase.recorded", purchase("10", "2026-05-02T00:00:00Z")),
    ]
    try:
        with pytest.raises(RuntimeError):
            async with sessions() as session, session.begin():
                for event in bought:  # the purchase reads the key the creation made
                    await HANDLERS[event.type](session, event, parse_data(event))
                raise RuntimeError("a later message of the batch failed")
        for customer in (second, first):
            event = envelope(customer, "purchase.recorded", purchase("7", "2026-05-03T00:00:00Z"))
            async with sessions() as session, session.begin():
                await HANDLERS[event.type](session, event, parse_data(event))
        async with sessions() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT a.customer_id, a.key, d.revenue FROM customer_aggregates a "
                        "JOIN daily_activity d ON d.customer_key = a.key"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert len(rows) == 2 and len({row.key for row in rows}) == 2
    assert {uuid.UUID(str(row.customer_id)) for row in rows} == {first, second}


async def test_an_earlier_purchase_moves_first_seen_even_when_the_customer_is_remembered(
    new_database: DatabaseFactory,
) -> None:
    """Purchases after a customer's first-seen moment write no aggregate row (the moment is
    remembered between batches); an earlier one moves it, and one that rolls back leaves
    nothing remembered that would hide a later, less early, purchase."""
    url = await new_database("tiering")
    engine = create_engine(url)
    sessions = session_factory(engine)
    customer = uuid.uuid4()

    async def apply(when: str, fail: bool = False) -> None:
        event = envelope(customer, "purchase.recorded", purchase("5", when))
        async with sessions() as session, session.begin():
            await HANDLERS[event.type](session, event, parse_data(event))
            if fail:
                raise RuntimeError("a later message of the batch failed")

    async def first_seen() -> dt.datetime:
        async with sessions() as session:
            found = await session.scalar(
                select(CustomerAggregate.first_seen_at).where(
                    CustomerAggregate.customer_id == customer
                )
            )
        assert found is not None
        return found

    try:
        await apply("2026-05-10T00:00:00Z")
        await apply("2026-05-12T00:00:00Z")  # later: the remembered moment stays
        assert await first_seen() == dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
        await apply("2026-05-01T00:00:00Z")  # earlier, with the customer remembered
        assert await first_seen() == dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
        with pytest.raises(RuntimeError):
            await apply("2026-04-01T00:00:00Z", fail=True)
        assert await first_seen() == dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
        await apply("2026-04-20T00:00:00Z")  # before the stored moment, after the undone one
        assert await first_seen() == dt.datetime(2026, 4, 20, tzinfo=dt.UTC)
    finally:
        await engine.dispose()


async def test_a_poll_of_customer_events_is_applied_at_once_as_one_by_one(
    new_database: DatabaseFactory,
) -> None:
    """A poll of `customer.created` (an import) makes every customer known with its own
    key in one call; a poll of `customer.updated` out of revision order keeps, per field,
    the newest revision's value, as events applied one by one do."""
    url = await new_database("tiering")
    engine = create_engine(url)
    sessions = session_factory(engine)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    earlier = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def customer_event(customer: uuid.UUID, event_type: str, **fields: object) -> EventEnvelope:
        event = envelope(customer, event_type, {"name": "A", "kind": "company", **fields})
        return event.model_copy(update={"occurred_at": earlier}) if customer == third else event

    created = [
        customer_event(customer, "customer.created", revision=1, account_manager="mia")
        for customer in (first, second, third)
    ]
    updated = [  # first's revisions arrive 3, 2; the older one changes nothing
        customer_event(first, "customer.updated", revision=3, account_manager="noah"),
        customer_event(first, "customer.updated", revision=2, relationship_level="vendor"),
        customer_event(first, "customer.updated", revision=2, account_manager="ann"),
        customer_event(second, "customer.updated", revision=2, relationship_level="partner"),
    ]
    try:
        for batch in (created, updated):
            async with sessions() as session, session.begin():
                await BULK_HANDLERS[batch[0].type](
                    session, [(event, parse_data(event)) for event in batch]
                )
        async with sessions() as session:
            rows = {
                uuid.UUID(str(row.customer_id)): row
                for row in await session.execute(
                    text(
                        "SELECT customer_id, key, known, account_manager, relationship_level, "
                        "first_seen_at FROM customer_aggregates"
                    )
                )
            }
    finally:
        await engine.dispose()
    assert set(rows) == {first, second, third}
    assert len({row.key for row in rows.values()}) == 3
    assert all(row.known for row in rows.values())
    assert (rows[first].account_manager, rows[first].relationship_level) == ("noah", "vendor")
    assert (rows[second].account_manager, rows[second].relationship_level) == ("mia", "partner")
    seen = rows[third].first_seen_at
    assert (seen if isinstance(seen, dt.datetime) else dt.datetime.fromisoformat(seen)).replace(
        tzinfo=dt.UTC
    ) == earlier
