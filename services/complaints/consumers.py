"""Complaints' event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.service import complaints_service
from shared.consumer import BulkHandler, EventHandler, one_at_a_time
from shared.events import EventData, EventEnvelope, PurchaseRecorded, TierChanged


async def apply_customer_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await complaints_service.note_customers(
        session, [(event, data.model_dump()) for event, data in events]
    )


async def on_customer_erased(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await complaints_service.erase_customer(session, event.customer_id, event.occurred_at)


async def apply_tier_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    changes = []
    for event, data in events:
        assert isinstance(data, TierChanged)
        changes.append((event.customer_id, data.tier, data.changed_at))
    await complaints_service.note_tiers(session, changes)


async def apply_purchases(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    purchases = []
    for event, data in events:
        assert isinstance(data, PurchaseRecorded)
        if data.amount >= 0:  # a refund is not buying again
            purchases.append((event.customer_id, data.purchased_at))
    await complaints_service.note_purchases(session, purchases)


HANDLERS: dict[str, EventHandler] = {
    "customer.created": one_at_a_time(apply_customer_changes),
    "customer.updated": one_at_a_time(apply_customer_changes),
    "customer.erased": on_customer_erased,
    "tier.changed": one_at_a_time(apply_tier_changes),
    "purchase.recorded": one_at_a_time(apply_purchases),
}
# A poll's events about many customers (an import, a first ranking: thousands) read
# each customer's row once.
BULK_HANDLERS: dict[str, BulkHandler] = {
    "customer.created": apply_customer_changes,
    "customer.updated": apply_customer_changes,
    "tier.changed": apply_tier_changes,
    "purchase.recorded": apply_purchases,
}
