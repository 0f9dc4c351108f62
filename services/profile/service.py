"""Profile rules. Adds outbox rows with each change; never commits (the caller does)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository as repo
from services.profile.models import Customer, Purchase
from services.profile.schemas import CustomerCreate, PurchaseCreate
from shared.db import utcnow
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import CustomerCreated, PurchaseRecorded, TierChanged
from shared.outbox import record_event
from shared.pagination import decode_cursor

PRODUCER = "profile"


def _after(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    when, ident = decode_cursor(cursor, 2)
    try:
        return dt.datetime.fromisoformat(when), uuid.UUID(ident)
    except ValueError as exc:
        raise InvalidInput("The cursor is not one this service issued.") from exc


class ProfileService:
    """Customers and their purchases."""

    async def create_customer(self, session: AsyncSession, data: CustomerCreate) -> Customer:
        """Create a customer and announce it (`customer.created`)."""
        if data.external_ref and await repo.customers.get_by_external_ref(
            session, data.external_ref
        ):
            raise Conflict(f"A customer with external_ref {data.external_ref!r} exists.")
        if data.referred_by and not await self._live_customer(session, data.referred_by):
            raise InvalidInput(
                "referred_by names no known customer.",
                errors=[{"field": "referred_by", "message": "unknown customer", "type": "ref"}],
            )
        now = utcnow()
        customer = Customer(
            id=uuid.uuid4(),
            **data.model_dump(exclude={"consent"}),
            consent={channel: state for channel, state in data.consent.items()},
            created_at=now,
            updated_at=now,
            version=1,
        )
        await repo.customers.add(session, customer)
        await record_event(
            session,
            producer=PRODUCER,
            event_type="customer.created",
            customer_id=customer.id,
            data=CustomerCreated(
                name=customer.name,
                kind=data.kind,
                industry=customer.industry,
                region=customer.region,
                stage=customer.stage,
                account_manager=customer.account_manager,
                birthday=customer.birthday,
                timezone=customer.timezone,
                consent=dict(customer.consent),
            ),
            occurred_at=now,
        )
        return customer

    async def get_customer(self, session: AsyncSession, customer_id: uuid.UUID) -> Customer:
        """A live customer, or 404."""
        customer = await self._live_customer(session, customer_id)
        if customer is None:
            raise NotFound(f"No customer {customer_id}.")
        return customer

    async def list_customers(
        self,
        session: AsyncSession,
        *,
        filters: dict[str, str],
        text: str | None,
        cursor: str | None,
        limit: int,
    ) -> Sequence[Customer]:
        """Live customers matching every filter, oldest first."""
        return await repo.customers.list(
            session, filters=filters, text=text, after=_after(cursor), limit=limit
        )

    async def record_purchase(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: PurchaseCreate,
        base_currency: str,
    ) -> Purchase:
        """Record a purchase and announce it (`purchase.recorded`)."""
        customer = await self.get_customer(session, customer_id)
        if data.currency != base_currency:
            raise InvalidInput(
                f"Amounts must be in the base currency {base_currency}.",
                errors=[
                    {"field": "currency", "message": f"must be {base_currency}", "type": "currency"}
                ],
            )
        if data.amount == 0:
            raise InvalidInput(
                "A purchase of zero is not a purchase.",
                errors=[{"field": "amount", "message": "must not be zero", "type": "value"}],
            )
        if data.external_id and await repo.purchases.get_by_external_id(
            session, customer.id, data.external_id
        ):
            raise Conflict(f"Purchase {data.external_id!r} is already recorded.")
        purchase = Purchase(id=uuid.uuid4(), customer_id=customer.id, **data.model_dump())
        purchase.created_at = utcnow()
        await repo.purchases.add(session, purchase)
        await record_event(
            session,
            producer=PRODUCER,
            event_type="purchase.recorded",
            customer_id=customer.id,
            data=PurchaseRecorded(
                purchase_id=purchase.id,
                amount=purchase.amount,
                currency=purchase.currency,
                quantity=purchase.quantity,
                unit=purchase.unit,
                category=purchase.category,
                sku=purchase.sku,
                purchased_at=purchase.purchased_at,
                external_id=purchase.external_id,
            ),
        )
        return purchase

    async def list_purchases(
        self, session: AsyncSession, customer_id: uuid.UUID, *, cursor: str | None, limit: int
    ) -> Sequence[Purchase]:
        """A customer's purchases in time order."""
        await self.get_customer(session, customer_id)
        return await repo.purchases.list_for_customer(
            session, customer_id, after=_after(cursor), limit=limit
        )

    async def apply_tier_change(
        self, session: AsyncSession, customer_id: uuid.UUID, change: TierChanged
    ) -> None:
        """Keep the read-only `tier` field in step with tiering."""
        customer = await repo.customers.get(session, customer_id)
        if customer is None or customer.erased_at is not None:
            return
        customer.tier = change.tier
        await session.flush()

    async def _live_customer(
        self, session: AsyncSession, customer_id: uuid.UUID
    ) -> Customer | None:
        customer = await repo.customers.get(session, customer_id)
        if customer is None or customer.erased_at is not None:
            return None
        return customer


profile_service = ProfileService()
