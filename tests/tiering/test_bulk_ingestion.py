"""Bulk ingestion: purchases and payments a poll brings are folded per customer and day
and written as set-based upserts; the figures are exactly those of applying each event
on its own (refunds, free items, several days, a customer first seen by a purchase, a
repeated event)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.tiering.app import create_app as create_tiering
from services.tiering.consumers import HANDLERS
from shared.broker import EmbeddedBroker
from shared.events import EventEnvelope
from tests.conftest import DatabaseFactory, EventSender, eventually, query, running
from tests.shared.test_consumer import consumer_settings, producer_for, send

FIGURES = (
    "SELECT a.customer_id, a.first_seen_at, d.day, d.revenue, d.quantity, d.purchases, "
    "d.collected, d.first_purchase_at, d.last_purchase_at "
    "FROM customer_aggregates a JOIN daily_activity d ON d.customer_key = a.key "
    "ORDER BY a.customer_id, d.day"
)


def purchase(customer: uuid.UUID, amount: str, day: str, quantity: str = "1") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "purchase.recorded",
        "occurred_at": f"2026-11-{day}T09:00:00Z",
        "producer": "profile",
        "customer_id": str(customer),
        "data": {
            "purchase_id": str(uuid.uuid4()),
            "amount": amount,
            "currency": "CNY",
            "quantity": quantity,
            "purchased_at": f"2026-11-{day}T09:00:00Z",
        },
    }


def payment(customer: uuid.UUID, amount: str, day: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "payment.recorded",
        "occurred_at": f"2026-11-{day}T10:00:00Z",
        "producer": "profile",
        "customer_id": str(customer),
        "data": {
            "payment_id": str(uuid.uuid4()),
            "amount": amount,
            "currency": "CNY",
            "received_at": f"2026-11-{day}T10:00:00Z",
        },
    }


async def test_a_poll_folded_in_bulk_gives_the_figures_of_one_event_at_a_time(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    known, newcomer, refunder = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [
        purchase(known, "100.00", "03", "2"),
        purchase(known, "0", "03"),  # a free item: a purchase
        purchase(known, "250.50", "01", "1.5"),  # earlier than the first: moves the first date
        purchase(newcomer, "40.00", "05"),  # no customer.created yet
        purchase(refunder, "80.00", "02"),
        purchase(refunder, "-30.00", "04"),  # a refund: not a purchase
        payment(known, "300.00", "03"),
        payment(refunder, "50.00", "06"),
    ]
    repeated = events[0]
    reference_url = await new_database("tiering")
    reference = EventSender(reference_url, HANDLERS)
    await reference.send(known, "customer.created", {"name": "Known", "kind": "company"})
    for event in events:
        envelope = EventEnvelope.model_validate(event)
        await reference.send_envelope(envelope)

    settings = await consumer_settings(broker, new_database, topic_prefix)
    bulk = EventSender(settings.database_url, HANDLERS)
    await bulk.send(known, "customer.created", {"name": "Known", "kind": "company"})
    async with running(create_tiering(settings)), producer_for(broker) as producer:
        for event in [*events, repeated]:
            topic = settings.topic(event["type"])
            await send(producer, topic, uuid.UUID(event["customer_id"]), json.dumps(event).encode())

        async def all_applied() -> Any:
            rows = await query(settings.database_url, "SELECT count(*) AS n FROM inbox")
            return rows[0].n >= len(events)

        await eventually(all_applied)
        expected = await query(reference_url, FIGURES)
        found = await eventually(
            lambda: _when_equal(query(settings.database_url, FIGURES), expected)
        )
    assert found == expected
    by_customer = {row.customer_id: row for row in found}
    assert len(by_customer) == 3


async def _when_equal(rows: Any, expected: list[Any]) -> list[Any] | None:
    found: list[Any] = await rows
    return found if found == expected else None
