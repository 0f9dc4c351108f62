"""All of profile's SQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.models import (
    AuditEntry,
    ConsentChange,
    Contact,
    Customer,
    CustomerChange,
    Interaction,
    Payment,
    Purchase,
)
from shared.db import expire_held

Row = TypeVar("Row", Purchase, Payment, Interaction, Contact)

MAX_REFERRAL_DEPTH = 10


def erased_ref_digest(ref: str) -> str:
    """One-way: the reference cannot be read back from it."""
    return hashlib.sha256(ref.encode()).hexdigest()


class CustomerRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
        return await session.get(Customer, customer_id)

    async def set_tiers(
        self, session: AsyncSession, tiers: Sequence[tuple[uuid.UUID, str, dt.datetime]]
    ) -> None:
        """(customer, tier, changed at): each tier kept unless the customer is erased or
        holds one given later; one statement executed for all (asyncpg pipelines it)."""
        if not tiers:
            return
        table: Any = Customer.__table__
        changed_at = bindparam("changed_at", type_=table.c.tier_changed_at.type)
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("customer_id", type_=table.c.id.type),
                table.c.erased_at.is_(None),
                or_(table.c.tier_changed_at.is_(None), table.c.tier_changed_at <= changed_at),
            )
            .values(tier=bindparam("new_tier"), tier_changed_at=changed_at)
        )
        await session.execute(
            stmt,
            [
                {"customer_id": customer_id, "new_tier": tier, "changed_at": at}
                for customer_id, tier, at in tiers
            ],
        )
        expire_held(session, Customer, (customer_id for customer_id, _, _ in tiers))

    async def get_for_update(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> Customer | None:
        """The customer row, locked on PostgreSQL until the transaction ends."""
        found = await session.execute(
            select(Customer).where(Customer.id == customer_id).with_for_update()
        )
        return found.scalar_one_or_none()

    async def get_by_external_ref(self, session: AsyncSession, ref: str) -> Customer | None:
        found = await session.execute(select(Customer).where(Customer.external_ref == ref))
        return found.scalar_one_or_none()

    async def erased_refs(self, session: AsyncSession, refs: Iterable[str]) -> set[str]:
        """Which of these references belonged to a customer since erased."""
        by_digest = {erased_ref_digest(ref): ref for ref in refs}
        if not by_digest:
            return set()
        found = await session.execute(
            select(Customer.erased_ref_digest).where(Customer.erased_ref_digest.in_(by_digest))
        )
        return {by_digest[digest] for digest in found.scalars() if digest is not None}

    async def add(self, session: AsyncSession, customer: Customer) -> Customer:
        session.add(customer)
        await session.flush()
        return customer

    async def search(
        self,
        session: AsyncSession,
        *,
        filters: dict[str, str],
        text: str | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
        contact_fields: bool = True,
    ) -> Sequence[Customer]:
        """`text` matches names, references and (with `contact_fields`) the contacts'
        names and emails."""
        query: Select[Customer] = select(Customer).where(Customer.erased_at.is_(None))
        for field, value in filters.items():
            query = query.where(getattr(Customer, field) == value)
        if text:
            escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            if contact_fields:
                query = query.where(Customer.search_text.like(pattern, escape="\\"))
            else:
                query = query.where(
                    func.lower(Customer.name).like(pattern, escape="\\")
                    | func.lower(Customer.external_ref).like(pattern, escape="\\")
                )
        if after is not None:
            query = query.where(tuple_(Customer.created_at, Customer.id) > tuple_(*after))
        query = query.order_by(Customer.created_at, Customer.id).limit(limit)
        return (await session.execute(query)).scalars().all()

    async def ancestors(self, session: AsyncSession, customer_id: uuid.UUID) -> list[uuid.UUID]:
        """Who referred this customer, who referred them, and so on (bounded)."""
        chain: list[uuid.UUID] = []
        current: uuid.UUID | None = customer_id
        while current is not None and len(chain) <= MAX_REFERRAL_DEPTH * 10:
            current = (
                await session.execute(select(Customer.referred_by).where(Customer.id == current))
            ).scalar_one_or_none()
            if current is None or current in chain:
                break
            chain.append(current)
        return chain

    async def referral_tree(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, str | None, uuid.UUID, int, Decimal, int, str | None]]:
        """Everyone referred by the customer, directly or further down, with what they
        bought and who manages them."""
        tree = (
            select(
                Customer.id.label("customer_id"),
                Customer.referred_by.label("referred_by"),
                literal(1).label("depth"),
            )
            .where(Customer.referred_by == customer_id)
            .cte("referrals", recursive=True)
        )
        child = Customer.__table__.alias("child")
        tree = tree.union(
            select(child.c.id, child.c.referred_by, tree.c.depth + 1).where(
                child.c.referred_by == tree.c.customer_id, tree.c.depth < MAX_REFERRAL_DEPTH
            )
        )
        spend = (
            select(
                Purchase.customer_id.label("customer_id"),
                func.coalesce(func.sum(Purchase.amount), 0).label("revenue"),
                func.count(Purchase.id).label("purchases"),
            )
            .group_by(Purchase.customer_id)
            .subquery()
        )
        rows = await session.execute(
            select(
                tree.c.customer_id,
                Customer.name,
                tree.c.referred_by,
                func.min(tree.c.depth),
                func.coalesce(func.max(spend.c.revenue), 0),
                func.coalesce(func.max(spend.c.purchases), 0),
                Customer.account_manager,
            )
            .join(Customer, Customer.id == tree.c.customer_id)
            .outerjoin(spend, spend.c.customer_id == tree.c.customer_id)
            .group_by(
                tree.c.customer_id, Customer.name, tree.c.referred_by, Customer.account_manager
            )
            .order_by(func.min(tree.c.depth), tree.c.customer_id)
        )
        # The sums keep the column's type, so they come back as exact decimals.
        return [
            (cid, name, parent, int(depth), Decimal(revenue), int(count), manager)
            for cid, name, parent, depth, revenue, count, manager in rows.all()
        ]


class HistoryRepository:
    async def stage_changes(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> Sequence[CustomerChange]:
        query = (
            select(CustomerChange)
            .where(CustomerChange.customer_id == customer_id)
            .order_by(CustomerChange.id)
        )
        return (await session.execute(query)).scalars().all()

    async def consent_changes(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> Sequence[ConsentChange]:
        query = (
            select(ConsentChange)
            .where(ConsentChange.customer_id == customer_id)
            .order_by(ConsentChange.id)
        )
        return (await session.execute(query)).scalars().all()

    async def audit(
        self, session: AsyncSession, customer_id: uuid.UUID, *, before: int | None, limit: int
    ) -> Sequence[AuditEntry]:
        query = select(AuditEntry).where(AuditEntry.customer_id == customer_id)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        return (
            (await session.execute(query.order_by(AuditEntry.id.desc()).limit(limit)))
            .scalars()
            .all()
        )

    async def scrub_audit(self, session: AsyncSession, customer_id: uuid.UUID) -> None:
        """Keep who changed which fields when, but not the values (they may be personal)."""
        entries = await session.execute(
            select(AuditEntry).where(AuditEntry.customer_id == customer_id)
        )
        for entry in entries.scalars():
            entry.changes = {field: "[erased]" for field in entry.changes}


class RecordRepository:
    """Purchases, payments, interactions and contacts: rows that belong to a customer."""

    async def add(self, session: AsyncSession, row: Any) -> None:
        session.add(row)
        await session.flush()

    async def get(self, session: AsyncSession, model: type[Row], row_id: uuid.UUID) -> Row | None:
        return await session.get(model, row_id)

    async def find_external(
        self,
        session: AsyncSession,
        model: type[Purchase] | type[Payment],
        customer_id: uuid.UUID,
        external_id: str,
    ) -> Any:
        found = await session.execute(
            select(model).where(model.customer_id == customer_id, model.external_id == external_id)
        )
        return found.scalar_one_or_none()

    async def page(
        self,
        session: AsyncSession,
        model: type[Row],
        time_column: Any,
        customer_id: uuid.UUID,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int,
    ) -> Sequence[Row]:
        query = select(model).where(model.customer_id == customer_id)
        if since is not None:
            query = query.where(time_column >= since)
        if until is not None:
            query = query.where(time_column < until)
        if after is not None:
            query = query.where(tuple_(time_column, model.id) > tuple_(*after))
        query = query.order_by(time_column, model.id).limit(limit)
        return (await session.execute(query)).scalars().all()

    async def contact_names(self, session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
        rows = await session.execute(
            select(Contact.name, Contact.email).where(Contact.customer_id == customer_id)
        )
        return [" ".join(filter(None, row)) for row in rows.all()]

    async def contacts(self, session: AsyncSession, customer_id: uuid.UUID) -> list[Contact]:
        rows = await session.execute(
            select(Contact).where(Contact.customer_id == customer_id).order_by(Contact.created_at)
        )
        return list(rows.scalars())

    async def remove_contact(self, session: AsyncSession, contact: Contact) -> None:
        await session.execute(
            update(Interaction).where(Interaction.contact_id == contact.id).values(contact_id=None)
        )
        await session.delete(contact)
        await session.flush()

    async def erase_personal_records(self, session: AsyncSession, customer_id: uuid.UUID) -> None:
        """Contacts go; interactions keep kind, time, author and score, not notes or contact."""
        await session.execute(
            update(Interaction)
            .where(Interaction.customer_id == customer_id)
            .values(notes=None, contact_id=None)
        )
        await session.execute(delete(Contact).where(Contact.customer_id == customer_id))


customers = CustomerRepository()
history = HistoryRepository()
records = RecordRepository()
