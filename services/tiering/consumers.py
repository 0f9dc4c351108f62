"""Tiering's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.service import tiering_service
from shared.consumer import EventHandler
from shared.events import EventData, EventEnvelope, PurchaseRecorded


async def on_customer_created(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await tiering_service.register_customer(session, event.customer_id)


async def on_purchase_recorded(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, PurchaseRecorded)
    await tiering_service.apply_purchase(session, event.customer_id, data)


HANDLERS: dict[str, EventHandler] = {
    "customer.created": on_customer_created,
    "purchase.recorded": on_purchase_recorded,
}
