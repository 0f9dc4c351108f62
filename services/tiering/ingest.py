"""Purchases and payments into the daily rows: a batch of `purchase.recorded` (or
`payment.recorded`) events folded in memory per customer and day, then written with one
set-based upsert (`INSERT ... ON CONFLICT DO UPDATE` adding the batch's sums), not a
read-modify-write of ORM rows per event. One event is a batch of one (the per-event
handlers). A customer's lifetime figures are the sums of its daily rows, so a purchase
writes one row, not also a lifetime row that every purchase of the customer rewrites.

A refund (negative amount) lowers revenue and quantity but is not a purchase: it moves
neither the count nor the purchase dates (recency, frequency, cycles); a free item (zero)
is one. A customer first seen here gets its aggregate row and key; one seen earlier than
its row says gets that moment.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, Table, bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.models import CustomerAggregate, DailyActivity, epoch_day
from shared.db import (
    column_in,
    earlier,
    expire_held,
    insert_new_rows,
    later,
    upsert_rows,
    utcnow,
)
from shared.events import EventData, EventEnvelope, PaymentRecorded, PurchaseRecorded
from shared.pg_arrays import unnested

AGGREGATES: Table = CustomerAggregate.__table__  # type: ignore[assignment]
DAILY: Table = DailyActivity.__table__  # type: ignore[assignment]
ROWS_PER_STATEMENT = 1000  # parameters per statement stay far below both databases' limits
ZERO = Decimal(0)


@dataclass
class _DaySums:
    revenue: Decimal = ZERO
    quantity: Decimal = ZERO
    purchases: int = 0
    collected: Decimal = ZERO
    first_purchase_at: dt.datetime | None = None
    last_purchase_at: dt.datetime | None = None

    def bought(self, when: dt.datetime) -> None:
        self.purchases += 1
        if self.first_purchase_at is None or when < self.first_purchase_at:
            self.first_purchase_at = when
        if self.last_purchase_at is None or when > self.last_purchase_at:
            self.last_purchase_at = when


@dataclass
class _Folded:
    """One customer's events of a batch: the earliest moment, and sums per day."""

    first_seen: dt.datetime
    days: dict[int, _DaySums] = field(default_factory=dict)


def _day_of(
    customers: dict[uuid.UUID, _Folded], customer_id: uuid.UUID, when: dt.datetime
) -> _DaySums:
    """The sums of the customer's day of `when` (a customer is looked up once an event)."""
    folded = customers.get(customer_id)
    if folded is None:
        folded = customers[customer_id] = _Folded(when)
    elif when < folded.first_seen:
        folded.first_seen = when
    day = epoch_day(when)
    sums = folded.days.get(day)
    if sums is None:
        sums = folded.days[day] = _DaySums()
    return sums


def _utc(when: dt.datetime) -> dt.datetime:
    """The moment (aware: the event models refuse others) in UTC. The parser gives each
    moment a time zone object of its own, and comparing or subtracting moments of
    different zone objects asks both for their offsets: a batch's moments are compared
    and subtracted several times each."""
    return when if when.tzinfo is dt.UTC else when.astimezone(dt.UTC)


async def apply_purchases(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    customers: dict[uuid.UUID, _Folded] = {}
    for envelope, data in events:
        assert isinstance(data, PurchaseRecorded)
        when = _utc(data.purchased_at)
        day = _day_of(customers, envelope.customer_id, when)
        day.revenue += data.amount
        if data.amount >= 0:
            day.quantity += data.quantity
            day.bought(when)
        else:  # a refund's quantity is what was given back (profile keeps it positive)
            day.quantity -= data.quantity
    await _write(session, customers)


async def apply_payments(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    customers: dict[uuid.UUID, _Folded] = {}
    for envelope, data in events:
        assert isinstance(data, PaymentRecorded)
        _day_of(customers, envelope.customer_id, _utc(data.received_at)).collected += data.amount
    await _write(session, customers)


async def _write(session: AsyncSession, customers: dict[uuid.UUID, _Folded]) -> None:
    keys = await customer_keys(
        session, {customer_id: folded.first_seen for customer_id, folded in customers.items()}
    )
    day_rows: list[dict[str, Any]] = []
    for customer_id, folded in customers.items():
        key = keys[customer_id]
        day_rows.extend(
            {
                "customer_key": key,
                "day": day,
                "revenue": sums.revenue,
                "quantity": sums.quantity,
                "purchases": sums.purchases,
                "collected": sums.collected,
                "first_purchase_at": sums.first_purchase_at,
                "last_purchase_at": sums.last_purchase_at,
            }
            for day, sums in folded.days.items()
        )
    await upsert_rows(session, DAILY, day_rows, ["customer_key", "day"], _added_to_day)


def _added_to_day(new: Any) -> dict[str, Any]:
    old = DAILY.c
    return {
        **{
            name: old[name] + new[name]
            for name in ("revenue", "quantity", "purchases", "collected")
        },
        "first_purchase_at": earlier(new.first_purchase_at, old.first_purchase_at),
        "last_purchase_at": later(new.last_purchase_at, old.last_purchase_at),
    }


Known = tuple[int, dt.datetime]  # a customer's key, and a moment not before its first seen


class KnownCustomers:
    """Customers' keys and first-seen moments read from the database, per database. A key
    never changes once its row has committed, and a first-seen moment only ever moves
    earlier, so one kept here is never before the row's: a customer's next events need
    neither looked up, nor written unless they are earlier still. Kept only once the
    transaction that read or wrote them commits (one rolled back may have read a row it
    was making itself, whose key SQLite then gives to another customer). Bounded: emptied
    when full."""

    PENDING = "tiering.customers_read"  # session.info: what was read, kept at commit

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.by_database: weakref.WeakKeyDictionary[Engine, dict[uuid.UUID, Known]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, session: AsyncSession) -> dict[uuid.UUID, Known]:
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        return self.by_database.setdefault(engine, {})

    def keep_at_commit(self, session: AsyncSession, found: dict[uuid.UUID, Known]) -> None:
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


known_customers = KnownCustomers()


async def customer_keys(
    session: AsyncSession, first_seen: dict[uuid.UUID, dt.datetime]
) -> dict[uuid.UUID, int]:
    """Each customer's key, making an aggregate row (and key) for those without one; a
    customer seen earlier than its row says gets that moment as its first seen."""
    known = known_customers.of(session)
    keys: dict[uuid.UUID, int] = {}
    earlier: dict[uuid.UUID, Known] = {}

    def take(found: dict[uuid.UUID, Known]) -> None:
        for customer_id, (key, seen) in found.items():
            keys[customer_id] = key
            if first_seen[customer_id] < seen:
                earlier[customer_id] = (key, first_seen[customer_id])

    ids = []
    for customer_id, seen in first_seen.items():
        held = known.get(customer_id)
        if held is None:
            ids.append(customer_id)
            continue
        keys[customer_id] = held[0]
        if seen < held[1]:
            earlier[customer_id] = (held[0], seen)
    if ids:
        found = await _stored(session, ids)
        known_customers.keep_at_commit(session, found)
        take(found)
        missing = [customer_id for customer_id in ids if customer_id not in keys]
        if missing:
            await _make(session, missing, first_seen, keys, take)
    if earlier:
        await _seen_earlier(session, earlier)
        known_customers.keep_at_commit(session, earlier)
    return keys


async def _make(
    session: AsyncSession,
    missing: list[uuid.UUID],
    first_seen: dict[uuid.UUID, dt.datetime],
    keys: dict[uuid.UUID, int],
    take: Any,
) -> None:
    """Rows and keys for customers without one; one made meanwhile by another transaction
    keeps its own key."""
    new_keys = await repo.aggregates.new_keys(session, len(missing))
    now = utcnow()
    rows = [
        {
            "customer_id": customer_id,
            "key": key,
            "first_seen_at": first_seen[customer_id],
            "updated_at": now,
        }
        for customer_id, key in zip(missing, new_keys, strict=True)
    ]
    made = await insert_new_rows(session, AGGREGATES, rows, "customer_id")
    kept: dict[uuid.UUID, Known] = {
        customer_id: (key, first_seen[customer_id])
        for customer_id, key in zip(missing, new_keys, strict=True)
        if customer_id in made
    }
    known_customers.keep_at_commit(session, kept)
    keys.update((customer_id, key) for customer_id, (key, _) in kept.items())
    taken = [customer_id for customer_id in missing if customer_id not in made]
    if taken:
        found = await _stored(session, taken)
        known_customers.keep_at_commit(session, found)
        take(found)


async def _stored(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Known]:
    dialect = session.get_bind().dialect
    found: dict[uuid.UUID, Known] = {}
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        rows = await session.execute(
            select(AGGREGATES.c.customer_id, AGGREGATES.c.key, AGGREGATES.c.first_seen_at).where(
                column_in(
                    AGGREGATES.c.customer_id, ids[start : start + ROWS_PER_STATEMENT], dialect
                )
            )
        )
        found.update({customer_id: (key, seen) for customer_id, key, seen in rows})
    return found


async def _seen_earlier(session: AsyncSession, earlier: dict[uuid.UUID, Known]) -> None:
    """Move these customers' first-seen moments earlier (never later: another transaction
    may have moved one earlier still)."""
    rows = [{"key": key, "first_seen_at": seen} for key, seen in earlier.values()]
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        given = unnested(AGGREGATES, rows, dialect).subquery()
        await session.execute(
            update(AGGREGATES)
            .where(AGGREGATES.c.key == given.c.key)
            .where(given.c.first_seen_at < AGGREGATES.c.first_seen_at)
            .values(first_seen_at=given.c.first_seen_at),
            execution_options={"synchronize_session": False},
        )
    else:
        await session.execute(
            update(AGGREGATES)
            .where(AGGREGATES.c.key == bindparam("given_key"))
            .where(AGGREGATES.c.first_seen_at > bindparam("given_seen"))
            .values(first_seen_at=bindparam("given_seen")),
            [{"given_key": key, "given_seen": seen} for key, seen in earlier.values()],
            execution_options={"synchronize_session": False},
        )
    expire_held(session, CustomerAggregate, earlier)
