"""All of profile's SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.models import Customer, Purchase


class CustomerRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
        return await session.get(Customer, customer_id)

    async def get_by_external_ref(self, session: AsyncSession, ref: str) -> Customer | None:
        found = await session.execute(select(Customer).where(Customer.external_ref == ref))
        return found.scalar_one_or_none()

    async def add(self, session: AsyncSession, customer: Customer) -> Customer:
        session.add(customer)
        await session.flush()
        return customer

    async def list(
        self,
        session: AsyncSession,
        *,
        filters: dict[str, str],
        text: str | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Customer]:
        query: Select[Customer] = select(Customer).where(Customer.erased_at.is_(None))
        for field, value in filters.items():
            query = query.where(getattr(Customer, field) == value)
        if text:
            pattern = f"%{text.lower()}%"
            query = query.where(
                or_(
                    Customer.name.ilike(pattern),
                    Customer.external_ref.ilike(pattern),
                )
            )
        if after is not None:
            query = query.where(tuple_(Customer.created_at, Customer.id) > tuple_(*after))
        query = query.order_by(Customer.created_at, Customer.id).limit(limit)
        return (await session.execute(query)).scalars().all()


class PurchaseRepository:
    async def add(self, session: AsyncSession, purchase: Purchase) -> Purchase:
        session.add(purchase)
        await session.flush()
        return purchase

    async def get_by_external_id(
        self, session: AsyncSession, customer_id: uuid.UUID, external_id: str
    ) -> Purchase | None:
        found = await session.execute(
            select(Purchase).where(
                Purchase.customer_id == customer_id, Purchase.external_id == external_id
            )
        )
        return found.scalar_one_or_none()

    async def list_for_customer(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Purchase]:
        query = select(Purchase).where(Purchase.customer_id == customer_id)
        if after is not None:
            query = query.where(tuple_(Purchase.purchased_at, Purchase.id) > tuple_(*after))
        query = query.order_by(Purchase.purchased_at, Purchase.id).limit(limit)
        return (await session.execute(query)).scalars().all()


customers = CustomerRepository()
purchases = PurchaseRepository()
