"""All of outreach's SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.models import (
    CalendarEntry,
    ComplaintState,
    FeedToken,
    PurchaseCycle,
    Recipient,
    ServicePlan,
    Task,
    WriterGuard,
)
from services.outreach.planner import CustomerFacts, Cycle
from services.outreach.schemas import OPEN_STATUSES
from shared.access import CustomerAccess
from shared.db import (
    column_in,
    earlier,
    expire_held,
    get_or_add_locked,
    insert_ignoring_duplicates,
    later,
    upsert_rows,
)

DUE_STATUSES = ("pending", "deferred")
CYCLES = PurchaseCycle.__table__
# A category's typical cycle is learned from at most this many of its customers.
TYPICAL_SAMPLE = 2000


def among(column: ColumnElement[Any], customer_ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """Rows of these customers, or more: a planning batch is thousands of consecutive ids,
    read in one range scan rather than bound one by one (callers drop the others)."""
    if len(customer_ids) > 100:
        return column.between(min(customer_ids), max(customer_ids))
    return column.in_(list(customer_ids))


def _added_to_cycle(new: Any) -> dict[str, Any]:
    old = CYCLES.c
    return {
        "purchases": old.purchases + new.purchases,
        "first_at": earlier(new.first_at, old.first_at),
        "last_at": later(new.last_at, old.last_at),
    }


@dataclass(frozen=True)
class TaskFilters:
    customer_id: uuid.UUID | None = None
    assignee: str | None = None
    status: str | None = None
    kind: str | None = None
    due_before: dt.datetime | None = None
    due_after: dt.datetime | None = None


def visible_to(access: CustomerAccess) -> ColumnElement[bool] | None:
    """The tasks a principal may see (None: all): an agent's own worklist; an account
    manager's, and its customers' tasks."""
    return access.work_condition(
        [Task.assignee],
        Task.customer_id,
        lambda manager: select(Recipient.customer_id).where(Recipient.account_manager == manager),
    )


async def guard_writes(session: AsyncSession, name: str, now: dt.datetime) -> None:
    """On SQLite, take the database's write lock now, before reading (see WriterGuard);
    PostgreSQL locks the rows it takes (FOR UPDATE SKIP LOCKED) instead."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(WriterGuard).where(WriterGuard.name == name).values(taken_at=now)
        )


class RecipientRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> Recipient | None:
        return await session.get(Recipient, customer_id)

    async def get_or_add(self, session: AsyncSession, customer_id: uuid.UUID) -> Recipient:
        await insert_ignoring_duplicates(
            session, Recipient.__table__, {"customer_id": customer_id, "field_times": {}}
        )
        recipient = await session.get(Recipient, customer_id, with_for_update=True)
        assert recipient is not None
        return recipient

    async def get_or_add_many(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Recipient]:
        return await get_or_add_locked(session, Recipient, customer_ids, {"field_times": {}})

    async def many(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Recipient]:
        rows = await session.execute(
            select(Recipient).where(Recipient.customer_id.in_(list(customer_ids)))
        )
        return {row.customer_id: row for row in rows.scalars()}

    async def planning_facts(
        self,
        session: AsyncSession,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        after: uuid.UUID | None = None,
        upto: uuid.UUID | None = None,
        limit: int | None = None,
    ) -> list[tuple[uuid.UUID, CustomerFacts]]:
        """What planning needs of live customers, as rows rather than objects: those in
        `ids`, or the next `limit` after `after` (up to `upto`) in id order."""
        recipients = Recipient.__table__.c
        query = select(
            recipients.customer_id,
            recipients.timezone,
            recipients.birthday,
            recipients.birthday_calendar,
            recipients.key_dates,
            recipients.contacts,
            recipients.account_manager,
            recipients.tier,
        ).where(recipients.erased_at.is_(None))
        if ids is not None:
            query = query.where(recipients.customer_id.in_(list(ids)))
        if after is not None:
            query = query.where(recipients.customer_id > after)
        if upto is not None:
            query = query.where(recipients.customer_id <= upto)
        if limit is not None:
            query = query.order_by(recipients.customer_id).limit(limit)
        return [
            (
                customer_id,
                CustomerFacts(
                    timezone=zone,
                    birthday=birthday,
                    birthday_calendar=calendar,
                    key_dates=key_dates or [],
                    contacts=contacts or [],
                    account_manager=manager,
                    tier=tier,
                ),
            )
            for customer_id, zone, birthday, calendar, key_dates, contacts, manager, tier in (
                await session.execute(query)
            )
        ]

    async def split_points(self, session: AsyncSession, parts: int, fewest: int) -> list[uuid.UUID]:
        """Ids that split the live customers into `parts` ranges of about the same size
        (each range up to and including its point), fewer when a range would hold fewer
        than `fewest`; none when one range is all there is."""
        recipients = Recipient.__table__.c
        live = recipients.erased_at.is_(None)
        count = int(await session.scalar(select(func.count()).where(live)) or 0)
        parts = min(parts, count // max(fewest, 1))
        points = []
        for part in range(1, parts):
            point = await session.scalar(
                select(recipients.customer_id)
                .where(live)
                .order_by(recipients.customer_id)
                .offset(count * part // parts - 1)
                .limit(1)
            )
            if point is not None:
                points.append(point)
        return points


class ComplaintStateRepository:
    async def note(
        self,
        session: AsyncSession,
        complaint_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        is_open: bool,
        at: dt.datetime,
    ) -> None:
        """The complaint is open (or not) as of `at`, unless a later event said otherwise."""
        inserted = await insert_ignoring_duplicates(
            session,
            ComplaintState.__table__,
            {
                "complaint_id": complaint_id,
                "customer_id": customer_id,
                "open": is_open,
                "state_at": at,
            },
        )
        if not inserted:
            await session.execute(
                update(ComplaintState)
                .where(ComplaintState.complaint_id == complaint_id, ComplaintState.state_at <= at)
                .values(open=is_open, state_at=at)
            )

    async def customers_with_open(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        rows = await session.execute(
            select(ComplaintState.customer_id)
            .where(ComplaintState.customer_id.in_(list(customer_ids)), ComplaintState.open)
            .distinct()
        )
        return set(rows.scalars())


class CycleRepository:
    async def add_purchases(
        self, session: AsyncSession, purchases: Sequence[tuple[uuid.UUID, str, dt.datetime]]
    ) -> None:
        """Count purchases (customer, category, when) into their cycles: folded per cycle,
        then one upsert that adds the counts and widens first and last."""
        folded: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        for customer_id, category, at in purchases:
            cycle = folded.get((customer_id, category))
            if cycle is None:
                folded[customer_id, category] = {
                    "customer_id": customer_id,
                    "category": category,
                    "purchases": 1,
                    "first_at": at,
                    "last_at": at,
                }
            else:
                cycle["purchases"] += 1
                cycle["first_at"] = min(cycle["first_at"], at)
                cycle["last_at"] = max(cycle["last_at"], at)
        rows = [folded[key] for key in sorted(folded)]  # one lock order for every writer
        await upsert_rows(session, CYCLES, rows, ["customer_id", "category"], _added_to_cycle)
        expire_held(session, PurchaseCycle, folded)

    async def of_customers(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Cycle]]:
        cycles = PurchaseCycle.__table__.c
        rows = await session.execute(
            select(
                cycles.customer_id,
                cycles.category,
                cycles.purchases,
                cycles.first_at,
                cycles.last_at,
            ).where(among(cycles.customer_id, customer_ids))
        )
        found: dict[uuid.UUID, list[Cycle]] = defaultdict(list)
        wanted = set(customer_ids)
        for customer_id, category, purchases, first_at, last_at in rows:
            if customer_id in wanted:
                found[customer_id].append(Cycle(category, purchases, first_at, last_at))
        return found

    async def categories(self, session: AsyncSession) -> list[str]:
        rows = await session.execute(select(PurchaseCycle.category).distinct())
        return list(rows.scalars())

    async def typical_days(
        self, session: AsyncSession, categories: Sequence[str], min_purchases: int
    ) -> dict[str, float]:
        """Each category's typical interval (days): the median over a sample of the
        customers who bought it often enough to have their own."""
        found: dict[str, float] = {}
        for category in categories:
            rows = await session.execute(
                select(PurchaseCycle.first_at, PurchaseCycle.last_at, PurchaseCycle.purchases)
                .where(
                    PurchaseCycle.category == category,
                    PurchaseCycle.purchases >= min_purchases,
                )
                .limit(TYPICAL_SAMPLE)
            )
            intervals = sorted(
                (last - first).total_seconds() / 86400 / (count - 1) for first, last, count in rows
            )
            if intervals:
                found[category] = intervals[len(intervals) // 2]
        return found


class TaskRepository:
    async def get(
        self, session: AsyncSession, task_id: uuid.UUID, *, lock: bool = False
    ) -> Task | None:
        query = select(Task).where(Task.id == task_id)
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def many(
        self, session: AsyncSession, task_ids: Sequence[uuid.UUID], *, lock: bool = False
    ) -> dict[uuid.UUID, Task]:
        query = select(Task).where(Task.id.in_(list(task_ids)))
        if lock:
            query = query.with_for_update()
        return {task.id: task for task in (await session.execute(query)).scalars()}

    async def planning_view(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Any]]:
        """Per customer, what planning needs of each of its tasks (rows, not objects)."""
        tasks = Task.__table__.c
        rows = await session.execute(
            select(
                tasks.customer_id,
                tasks.id,
                tasks.kind,
                tasks.occasion,
                tasks.status,
                tasks.channel,
                tasks.assignee,
                tasks.due_at,
                tasks.completed_at,
            ).where(among(tasks.customer_id, customer_ids))
        )
        found: dict[uuid.UUID, list[Any]] = defaultdict(list)
        wanted = set(customer_ids)
        for row in rows:
            if row.customer_id in wanted:
                found[row.customer_id].append(row)
        return found

    async def of_customer(self, session: AsyncSession, customer_id: uuid.UUID) -> list[Task]:
        rows = await session.execute(select(Task).where(Task.customer_id == customer_id))
        return list(rows.scalars())

    async def open_of(
        self,
        session: AsyncSession,
        customer_ids: Sequence[uuid.UUID],
        kinds: Sequence[str] | None = None,
    ) -> list[Task]:
        if not customer_ids:
            return []
        dialect = session.get_bind().dialect
        query = select(Task).where(
            column_in(Task.customer_id, list(customer_ids), dialect),
            Task.status.in_(OPEN_STATUSES),
        )
        if kinds is not None:
            query = query.where(Task.kind.in_(list(kinds)))
        return list((await session.execute(query.order_by(Task.id))).scalars())

    async def occasions_of(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> set[tuple[uuid.UUID, str]]:
        """The occasions these customers have a task for, whatever its status."""
        dialect = session.get_bind().dialect
        rows = await session.execute(
            select(Task.customer_id, Task.occasion).where(
                column_in(Task.customer_id, list(customer_ids), dialect)
            )
        )
        return {(customer_id, occasion) for customer_id, occasion in rows}

    async def held_for_complaint(self, session: AsyncSession, customer_id: uuid.UUID) -> list[Task]:
        rows = await session.execute(
            select(Task).where(Task.customer_id == customer_id, Task.status == "held")
        )
        return list(rows.scalars())

    async def search(
        self,
        session: AsyncSession,
        filters: TaskFilters,
        access: CustomerAccess,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Task]:
        conditions: list[ColumnElement[bool]] = []
        scope = visible_to(access)
        if scope is not None:
            conditions.append(scope)
        for column, value in (
            (Task.customer_id, filters.customer_id),
            (Task.assignee, filters.assignee),
            (Task.status, filters.status),
            (Task.kind, filters.kind),
        ):
            if value is not None:
                conditions.append(column == value)
        if filters.due_before is not None:
            conditions.append(Task.due_at < filters.due_before)
        if filters.due_after is not None:
            conditions.append(Task.due_at >= filters.due_after)
        if after is not None:
            when, ident = after
            conditions.append(or_(Task.due_at > when, and_(Task.due_at == when, Task.id > ident)))
        rows = await session.execute(
            select(Task).where(*conditions).order_by(Task.due_at, Task.id).limit(limit)
        )
        return rows.scalars().all()

    async def due(self, session: AsyncSession, now: dt.datetime, limit: int) -> list[Task]:
        """Tasks due by `now`, and deliveries whose lease ran out (their replica stopped),
        locked; another replica skips them."""
        query = (
            select(Task)
            .where(
                or_(
                    and_(Task.status.in_(DUE_STATUSES), Task.due_at <= now),
                    and_(Task.status == "sending", Task.lease_until <= now),
                )
            )
            .order_by(Task.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await session.execute(query)).scalars())

    async def sent_since(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID], since: dt.datetime
    ) -> dict[uuid.UUID, list[tuple[uuid.UUID, str, bool, dt.datetime, str]]]:
        """Per customer, the contacts made since `since`: task, channel, marketing, when,
        kind."""
        rows = await session.execute(
            select(
                Task.customer_id,
                Task.id,
                Task.channel,
                Task.marketing,
                Task.contacted_at,
                Task.kind,
            ).where(Task.customer_id.in_(list(customer_ids)), Task.contacted_at >= since)
        )
        found: dict[uuid.UUID, list[tuple[uuid.UUID, str, bool, dt.datetime, str]]] = defaultdict(
            list
        )
        for customer_id, task_id, channel, marketing, at, kind in rows:
            if at is not None:
                found[customer_id].append((task_id, channel, marketing, at, kind))
        return found

    async def next_due(self, session: AsyncSession) -> dt.datetime | None:
        value: dt.datetime | None = (
            await session.execute(
                select(func.min(Task.due_at)).where(Task.status.in_(DUE_STATUSES))
            )
        ).scalar_one()
        return value


class PlanRepository:
    async def get(self, session: AsyncSession, tier: str) -> ServicePlan | None:
        return await session.get(ServicePlan, tier)

    async def all(self, session: AsyncSession) -> list[ServicePlan]:
        return list((await session.execute(select(ServicePlan))).scalars())


class CalendarRepository:
    async def between(
        self, session: AsyncSession, start: dt.date, end: dt.date
    ) -> list[CalendarEntry]:
        rows = await session.execute(
            select(CalendarEntry)
            .where(CalendarEntry.on >= start, CalendarEntry.on <= end)
            .order_by(CalendarEntry.on)
        )
        return list(rows.scalars())


class FeedRepository:
    async def active(self, session: AsyncSession, digest: str) -> FeedToken | None:
        token = await session.get(FeedToken, digest)
        return token if token is not None and token.revoked_at is None else None

    async def revoke_all(self, session: AsyncSession, assignee: str, at: dt.datetime) -> None:
        await session.execute(
            update(FeedToken)
            .where(FeedToken.assignee == assignee, FeedToken.revoked_at.is_(None))
            .values(revoked_at=at)
        )


recipients = RecipientRepository()
complaints = ComplaintStateRepository()
cycles = CycleRepository()
tasks = TaskRepository()
plans = PlanRepository()
calendar = CalendarRepository()
feeds = FeedRepository()
