"""All of tiering's SQL."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import CustomerAggregate


class AggregateRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> CustomerAggregate | None:
        return await session.get(CustomerAggregate, customer_id)

    async def get_or_create(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> CustomerAggregate:
        # One customer's events share a partition and are applied one at a time,
        # so there is no race between this read and the insert.
        aggregate = await session.get(CustomerAggregate, customer_id)
        if aggregate is None:
            aggregate = CustomerAggregate(customer_id=customer_id)
            session.add(aggregate)
        return aggregate


aggregates = AggregateRepository()
