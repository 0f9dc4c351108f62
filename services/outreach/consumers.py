"""Outreach's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.service import outreach_service
from shared.consumer import BulkHandler, EventHandler, one_at_a_time
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    ComplaintTransitioned,
    EventData,
    EventEnvelope,
    purchases_made,
    tier_changes,
)


async def apply_customer_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await outreach_service.note_customers(
        session, [(event, data.model_dump()) for event, data in events]
    )


async def on_customer_erased(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await outreach_service.erase(session, event.customer_id, event.occurred_at)


async def apply_tier_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await outreach_service.note_tiers(session, tier_changes(events))


async def apply_purchases(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await outreach_service.note_purchases(
        session,
        [
            (customer_id, made.category, made.purchased_at)
            for customer_id, made in purchases_made(events)
        ],
    )


async def on_complaint_opened(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, ComplaintOpened)
    await outreach_service.complaint_opened(
        session, event.customer_id, data.complaint_id, event.occurred_at
    )


async def on_complaint_closed(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, ComplaintClosed)
    await outreach_service.complaint_closed(
        session, event.customer_id, data.complaint_id, event.occurred_at
    )


async def on_complaint_transitioned(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, ComplaintTransitioned)
    if data.to_status == "reopened":
        await outreach_service.complaint_opened(
            session, event.customer_id, data.complaint_id, event.occurred_at
        )


HANDLERS: dict[str, EventHandler] = {
    "customer.created": one_at_a_time(apply_customer_changes),
    "customer.updated": one_at_a_time(apply_customer_changes),
    "customer.erased": on_customer_erased,
    "tier.changed": one_at_a_time(apply_tier_changes),
    "purchase.recorded": one_at_a_time(apply_purchases),
    "complaint.opened": on_complaint_opened,
    "complaint.transitioned": on_complaint_transitioned,
    "complaint.closed": on_complaint_closed,
}

# A poll's events about many customers (an import, a first ranking: thousands) read
# each customer's row once and plan the customers together.
BULK_HANDLERS: dict[str, BulkHandler] = {
    "customer.created": apply_customer_changes,
    "customer.updated": apply_customer_changes,
    "tier.changed": apply_tier_changes,
    "purchase.recorded": apply_purchases,
}
