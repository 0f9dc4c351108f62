"""Tiering's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.ingest import apply_payments, apply_purchases
from services.tiering.service import tiering_service
from shared.consumer import BulkHandler, EventHandler, one_at_a_time
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    EventData,
    EventEnvelope,
    InteractionLogged,
    OutreachCompleted,
)


async def on_customer_erased(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    await tiering_service.mark_erased(session, event.customer_id)


async def apply_customer_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await tiering_service.note_customers(
        session, [(event, data.model_dump()) for event, data in events]
    )


async def on_interaction_logged(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, InteractionLogged)
    await tiering_service.record_touch(
        session, event.id, event.customer_id, data.kind, data.at, data.satisfaction
    )


async def on_outreach_completed(
    session: AsyncSession, event: EventEnvelope, data: EventData
) -> None:
    assert isinstance(data, OutreachCompleted)
    if data.outcome in ("sent", "done"):  # it reached the customer
        await tiering_service.record_touch(
            session, event.id, event.customer_id, f"outreach:{data.kind}", event.occurred_at, None
        )


async def on_complaint_opened(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, ComplaintOpened)
    await tiering_service.complaint_opened(session, event.customer_id, data, event.occurred_at)


async def on_complaint_closed(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, ComplaintClosed)
    await tiering_service.complaint_closed(session, event.customer_id, data, event.occurred_at)


HANDLERS: dict[str, EventHandler] = {
    "customer.created": one_at_a_time(apply_customer_changes),
    "customer.updated": one_at_a_time(apply_customer_changes),
    "customer.erased": on_customer_erased,
    "purchase.recorded": one_at_a_time(apply_purchases),
    "payment.recorded": one_at_a_time(apply_payments),
    "interaction.logged": on_interaction_logged,
    "outreach.completed": on_outreach_completed,
    "complaint.opened": on_complaint_opened,
    "complaint.closed": on_complaint_closed,
}
# Purchases and payments fold: a poll's are written as sums per customer and day; a
# poll's customer events are applied to each customer's row read once (an import of
# customers is thousands of them).
BULK_HANDLERS: dict[str, BulkHandler] = {
    "purchase.recorded": apply_purchases,
    "payment.recorded": apply_payments,
    "customer.created": apply_customer_changes,
    "customer.updated": apply_customer_changes,
}

# Events after which the customer's rules and scores are looked at again.
REASSESSED = frozenset(HANDLERS) - {"customer.erased"}


async def reassess_customers(session: AsyncSession, events: list[EventEnvelope]) -> None:
    """After a batch of events: the per-customer rules and scores of every customer it
    touched, at once (a customer with ten purchases in the batch is reassessed once)."""
    customers = dict.fromkeys(event.customer_id for event in events if event.type in REASSESSED)
    await tiering_service.reassess(session, list(customers))
