"""Purchases and payments into the aggregates: a batch of `purchase.recorded` (or
`payment.recorded`) events folded in memory per customer and per customer and day, then
written with a few set-based upserts (`INSERT ... ON CONFLICT DO UPDATE` adding the
batch's sums), not a read-modify-write of two ORM rows per event. One event is a batch of
one (the per-event handlers).

A refund (negative amount) lowers revenue and quantity but is not a purchase: it moves
neither the count nor the purchase dates (recency, frequency, cycles); a free item (zero)
is one. A customer first seen here gets its aggregate row and key.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, case, event, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.models import CustomerAggregate, DailyActivity, epoch_day
from shared.db import column_in, expire_held, insert_new_rows, upsert_rows, utcnow
from shared.events import EventData, EventEnvelope, PaymentRecorded, PurchaseRecorded

AGGREGATES = CustomerAggregate.__table__
DAILY = DailyActivity.__table__
ROWS_PER_STATEMENT = 1000  # parameters per statement stay far below both databases' limits
ZERO = Decimal(0)


@dataclass
class _CustomerSums:
    first_seen_at: dt.datetime
    revenue: Decimal = ZERO
    quantity: Decimal = ZERO
    collected: Decimal = ZERO
    purchase_count: int = 0
    first_purchase_at: dt.datetime | None = None
    last_purchase_at: dt.datetime | None = None

    def bought(self, when: dt.datetime) -> None:
        self.purchase_count += 1
        if self.first_purchase_at is None or when < self.first_purchase_at:
            self.first_purchase_at = when
        if self.last_purchase_at is None or when > self.last_purchase_at:
            self.last_purchase_at = when


@dataclass
class _DaySums:
    revenue: Decimal = ZERO
    quantity: Decimal = ZERO
    purchases: int = 0
    collected: Decimal = ZERO


async def apply_purchases(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    customers: dict[uuid.UUID, _CustomerSums] = {}
    days: dict[tuple[uuid.UUID, int], _DaySums] = {}
    for envelope, data in events:
        assert isinstance(data, PurchaseRecorded)
        when = data.purchased_at
        sums = _sums_of(customers, envelope.customer_id, when)
        sums.revenue += data.amount
        sums.quantity += data.quantity
        day = days.setdefault((envelope.customer_id, epoch_day(when)), _DaySums())
        day.revenue += data.amount
        day.quantity += data.quantity
        if data.amount >= 0:
            sums.bought(when)
            day.purchases += 1
    await _write(session, customers, days)


async def apply_payments(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    customers: dict[uuid.UUID, _CustomerSums] = {}
    days: dict[tuple[uuid.UUID, int], _DaySums] = {}
    for envelope, data in events:
        assert isinstance(data, PaymentRecorded)
        when = data.received_at
        _sums_of(customers, envelope.customer_id, when).collected += data.amount
        days.setdefault(
            (envelope.customer_id, epoch_day(when)), _DaySums()
        ).collected += data.amount
    await _write(session, customers, days)


def _sums_of(
    customers: dict[uuid.UUID, _CustomerSums], customer_id: uuid.UUID, when: dt.datetime
) -> _CustomerSums:
    sums = customers.get(customer_id)
    if sums is None:
        sums = customers[customer_id] = _CustomerSums(first_seen_at=when)
    elif when < sums.first_seen_at:
        sums.first_seen_at = when
    return sums


async def _write(
    session: AsyncSession,
    customers: dict[uuid.UUID, _CustomerSums],
    days: dict[tuple[uuid.UUID, int], _DaySums],
) -> None:
    keys = await customer_keys(
        session, {cid: sums.first_seen_at for cid, sums in customers.items()}
    )
    now = utcnow()
    customer_rows = [
        {
            "customer_id": customer_id,
            "key": keys[customer_id],
            "first_seen_at": sums.first_seen_at,
            "updated_at": now,
            "revenue": sums.revenue,
            "quantity": sums.quantity,
            "collected": sums.collected,
            "purchase_count": sums.purchase_count,
            "first_purchase_at": sums.first_purchase_at,
            "last_purchase_at": sums.last_purchase_at,
        }
        for customer_id, sums in customers.items()
    ]
    day_rows = [
        {
            "customer_key": keys[customer_id],
            "day": day,
            "revenue": sums.revenue,
            "quantity": sums.quantity,
            "purchases": sums.purchases,
            "collected": sums.collected,
        }
        for (customer_id, day), sums in days.items()
    ]
    await upsert_rows(session, AGGREGATES, customer_rows, ["customer_id"], _added_to_customer)
    await upsert_rows(session, DAILY, day_rows, ["customer_key", "day"], _added_to_day)
    expire_held(session, CustomerAggregate, customers)


def _added_to_customer(new: Any) -> dict[str, Any]:
    old = AGGREGATES.c
    return {
        "revenue": old.revenue + new.revenue,
        "quantity": old.quantity + new.quantity,
        "collected": old.collected + new.collected,
        "purchase_count": old.purchase_count + new.purchase_count,
        "first_seen_at": case(
            (new.first_seen_at < old.first_seen_at, new.first_seen_at), else_=old.first_seen_at
        ),
        "first_purchase_at": _earlier(new.first_purchase_at, old.first_purchase_at),
        "last_purchase_at": _later(new.last_purchase_at, old.last_purchase_at),
        "updated_at": new.updated_at,
    }


def _added_to_day(new: Any) -> dict[str, Any]:
    return {
        name: DAILY.c[name] + new[name]
        for name in ("revenue", "quantity", "purchases", "collected")
    }


def _earlier(new: Any, old: Any) -> Any:
    return case((and_(new.is_not(None), or_(old.is_(None), new < old)), new), else_=old)


def _later(new: Any, old: Any) -> Any:
    return case((and_(new.is_not(None), or_(old.is_(None), new > old)), new), else_=old)


class KnownKeys:
    """Customer keys read from the database, per database: a key never changes once its
    row has committed, so a customer's next events need not look it up again. Keys are
    kept only once the transaction that read them commits (one rolled back may have read
    a row it was making itself, whose key SQLite then gives to another customer).
    Bounded: emptied when full."""

    PENDING = "tiering.keys_read"  # session.info: keys read, kept at commit

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.by_database: weakref.WeakKeyDictionary[Engine, dict[uuid.UUID, int]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, session: AsyncSession) -> dict[uuid.UUID, int]:
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        return self.by_database.setdefault(engine, {})

    def keep_at_commit(self, session: AsyncSession, found: dict[uuid.UUID, int]) -> None:
        pending = session.info.get(self.PENDING)
        if pending is None:
            pending = session.info[self.PENDING] = {}
            known = self.of(session)
            sync = session.sync_session

            def committed(_: Any) -> None:
                read = sync.info.pop(self.PENDING, {})
                if len(known) + len(read) > self.limit:
                    known.clear()
                known.update(read)

            def rolled_back(_: Any) -> None:
                sync.info.pop(self.PENDING, None)

            event.listen(sync, "after_commit", committed, once=True)
            event.listen(sync, "after_rollback", rolled_back, once=True)
        pending.update(found)


known_keys = KnownKeys()


async def customer_keys(
    session: AsyncSession, first_seen: dict[uuid.UUID, dt.datetime]
) -> dict[uuid.UUID, int]:
    """Each customer's key, making an aggregate row (and key) for those without one."""
    known = known_keys.of(session)
    keys = {cid: known[cid] for cid in first_seen if cid in known}
    ids = [cid for cid in first_seen if cid not in keys]
    if not ids:
        return keys
    found = await _known_keys(session, ids)
    known_keys.keep_at_commit(session, found)
    keys.update(found)
    missing = [customer_id for customer_id in ids if customer_id not in keys]
    if missing:
        new_keys = await repo.aggregates.new_keys(session, len(missing))
        rows = [
            {
                "customer_id": customer_id,
                "key": key,
                "first_seen_at": first_seen[customer_id],
                "updated_at": utcnow(),
            }
            for customer_id, key in zip(missing, new_keys, strict=True)
        ]
        made = await insert_new_rows(session, AGGREGATES, rows, "customer_id")
        keys.update(
            (customer_id, key)
            for customer_id, key in zip(missing, new_keys, strict=True)
            if customer_id in made
        )
        taken = [customer_id for customer_id in missing if customer_id not in made]
        if taken:  # made meanwhile by another transaction: it keeps its own key
            found = await _known_keys(session, taken)
            known_keys.keep_at_commit(session, found)
            keys.update(found)
    return keys


async def _known_keys(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    dialect = session.get_bind().dialect
    keys: dict[uuid.UUID, int] = {}
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        found = await session.execute(
            select(AGGREGATES.c.customer_id, AGGREGATES.c.key).where(
                column_in(
                    AGGREGATES.c.customer_id, ids[start : start + ROWS_PER_STATEMENT], dialect
                )
            )
        )
        keys.update({customer_id: key for customer_id, key in found})
    return keys
