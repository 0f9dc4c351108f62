"""Complaints' event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.service import complaints_service
from shared.consumer import EventHandler
from shared.events import EventData, EventEnvelope, PurchaseRecorded, TierChanged
from shared.revisions import stamp_of


async def on_customer_changed(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await complaints_service.note_customer(
        session, event.customer_id, data.model_dump(), stamp_of(event)
    )


async def on_customer_erased(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await complaints_service.erase_customer(session, event.customer_id, event.occurred_at)


async def on_tier_changed(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, TierChanged)
    await complaints_service.note_tier(session, event.customer_id, data.tier, data.changed_at)


async def on_purchase_recorded(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, PurchaseRecorded)
    if data.amount >= 0:  # a refund is not buying again
        await complaints_service.note_purchase(session, event.customer_id, data.purchased_at)


HANDLERS: dict[str, EventHandler] = {
    "customer.created": on_customer_changed,
    "customer.updated": on_customer_changed,
    "customer.erased": on_customer_erased,
    "tier.changed": on_tier_changed,
    "purchase.recorded": on_purchase_recorded,
}
