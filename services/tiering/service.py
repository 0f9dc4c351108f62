"""Tiering rules. Never commits (the caller does)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.schemas import Aggregates, TierView
from shared.db import utcnow
from shared.errors import NotFound
from shared.events import PurchaseRecorded


class TieringService:
    """Aggregates per customer and the tier view."""

    async def register_customer(self, session: AsyncSession, customer_id: uuid.UUID) -> None:
        """Note that the customer exists (`customer.created`)."""
        aggregate = await repo.aggregates.get_or_create(session, customer_id)
        aggregate.known = True
        aggregate.updated_at = utcnow()
        await session.flush()

    async def apply_purchase(
        self, session: AsyncSession, customer_id: uuid.UUID, purchase: PurchaseRecorded
    ) -> None:
        """Fold one purchase into the customer's aggregates."""
        aggregate = await repo.aggregates.get_or_create(session, customer_id)
        aggregate.revenue = (aggregate.revenue or Decimal(0)) + purchase.amount
        aggregate.quantity = (aggregate.quantity or Decimal(0)) + purchase.quantity
        aggregate.purchase_count = (aggregate.purchase_count or 0) + 1
        when = purchase.purchased_at
        if aggregate.first_purchase_at is None or when < aggregate.first_purchase_at:
            aggregate.first_purchase_at = when
        if aggregate.last_purchase_at is None or when > aggregate.last_purchase_at:
            aggregate.last_purchase_at = when
        aggregate.updated_at = utcnow()
        await session.flush()

    async def tier_view(self, session: AsyncSession, customer_id: uuid.UUID) -> TierView:
        """The customer's tier, scores, reasons, history and aggregates."""
        aggregate = await repo.aggregates.get(session, customer_id)
        if aggregate is None:
            raise NotFound(f"Tiering knows no customer {customer_id}.")
        return TierView(
            customer_id=customer_id,
            tier=aggregate.tier,
            scores={},
            reasons=[],
            history=[],
            aggregates=Aggregates(
                revenue=aggregate.revenue,
                quantity=aggregate.quantity,
                purchase_count=aggregate.purchase_count,
                first_purchase_at=aggregate.first_purchase_at,
                last_purchase_at=aggregate.last_purchase_at,
            ),
        )


tiering_service = TieringService()
