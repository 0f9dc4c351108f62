"""Tiering's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.service import tiering_service
from shared.consumer import EventHandler
from shared.events import EventData, EventEnvelope, PaymentRecorded, PurchaseRecorded


async def on_customer_created(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await tiering_service.register_customer(session, event.customer_id, event.occurred_at)


async def on_customer_erased(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await tiering_service.mark_erased(session, event.customer_id)


async def on_purchase_recorded(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, PurchaseRecorded)
    await tiering_service.apply_purchase(session, event.customer_id, data)


async def on_payment_recorded(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, PaymentRecorded)
    await tiering_service.apply_payment(session, event.customer_id, data)


HANDLERS: dict[str, EventHandler] = {
    "customer.created": on_customer_created,
    "customer.erased": on_customer_erased,
    "purchase.recorded": on_purchase_recorded,
    "payment.recorded": on_payment_recorded,
}
