"""Outreach rules: keep the local view of customers, plan each customer's contacts from its
tier's plan and the calendar, and handle tasks done by hand. Never commits."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import holidays
import numpy as np
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import repository as repo
from services.outreach.models import CalendarEntry, FeedToken, Recipient, ServicePlan, Task
from services.outreach.planner import (
    HORIZON,
    MIN_OWN_PURCHASES,
    CustomerFacts,
    Cycle,
    Occasion,
    PlannedTask,
    assignee_for,
    plan_customer,
)
from services.outreach.schemas import (
    DEFAULT_PLANS,
    OPEN_STATUSES,
    TOP_TIER,
    CalendarCreate,
    PlanDocument,
    TaskCompletion,
    TaskReassign,
    TaskReschedule,
    Upcoming,
    UpcomingContact,
)
from services.outreach.settings import OutreachSettings
from shared.access import CustomerAccess
from shared.columnar import insert_columns, object_column, random_uuid_column
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import EventEnvelope, OutreachCompleted
from shared.outbox import outbox_row, record_event, record_events
from shared.revisions import Stamp, stamp_of, take

PRODUCER = "outreach"
# The customer fields outreach keeps, from customer.created / customer.updated.
CUSTOMER_FIELDS = (
    "name",
    "timezone",
    "birthday",
    "birthday_calendar",
    "key_dates",
    "contacts",
    "consent",
    "account_manager",
)
# Kinds the plan and the calendar make (re-planning may move or cancel them); the others
# come from events (a complaint closed, a tier changed) and are left alone.
PLANNED_KINDS = frozenset(
    {"birthday", "key_date", "repurchase", "revisit", "survey", "holiday", "club_event"}
)
# Kinds of which one open task is kept until done (their next date counts from it).
RECURRING = ("revisit", "survey")
FOLLOW_UP_AFTER = dt.timedelta(days=2)


@functools.lru_cache(maxsize=32)
def _first_days_of_holidays(country: str, first_year: int, last_year: int) -> tuple[Occasion, ...]:
    """Built once per country and years: every customer event plans with them, and
    building a country's holidays costs milliseconds."""
    found = holidays.country_holidays(country, years=range(first_year, last_year + 1))
    firsts: dict[tuple[str, int], dt.date] = {}
    for day, name in sorted(found.items()):
        label = str(name)
        if label.startswith("Day off") or "(observed)" in label:
            continue
        firsts.setdefault((label, day.year), day)
    return tuple(
        Occasion(on=day, kind="holiday", name=name, tiers=None, channel=None)
        for (name, _), day in sorted(firsts.items(), key=lambda item: item[1])
    )


UPCOMING_FIELDS = ("kind", "occasion", "channel", "marketing", "due_at", "assignee", "basis")


def _contact_fields(contact: Task | PlannedTask) -> dict[str, Any]:
    """What a task and a planned contact both say of a contact (`/upcoming` lists both)."""
    return {name: getattr(contact, name) for name in UPCOMING_FIELDS}


def feed_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CustomerPlanning:
    """One customer as planning sees it: facts, plan, tasks (planning rows) and cycles."""

    facts: CustomerFacts
    plan: PlanDocument
    tasks: Sequence[Any]
    cycles: Sequence[Cycle]

    @property
    def recurring_open(self) -> set[str]:
        """The recurring kinds with an open task: the next one waits until it is done."""
        return {t.kind for t in self.tasks if t.kind in RECURRING and t.status in OPEN_STATUSES}


@dataclass(frozen=True)
class EventTask:
    """A task an event asks for: whose, under which tier's plan, what, and when due."""

    recipient: Recipient
    tier: str | None
    kind: str
    occasion: str
    due_at: dt.datetime
    basis: dict[str, Any]


class OutreachService:
    def __init__(self, holiday_country: str = "CN", planning_window_days: int = 31) -> None:
        self.holiday_country = holiday_country
        # Contacts due within this window are tasks; later ones are shown as planned.
        self.planning_window = dt.timedelta(days=planning_window_days)

    def configure(self, settings: OutreachSettings) -> None:
        self.holiday_country = settings.holiday_country
        self.planning_window = dt.timedelta(days=settings.planning_window_days)

    # ------------------------------------------------------------ plans
    async def plan_document(self, session: AsyncSession, tier: str | None) -> PlanDocument:
        """The plan of a tier: its own, else the `*` plan (stored, or the default)."""
        for key in (tier, "*") if tier else ("*",):
            assert key is not None
            row = await repo.plans.get(session, key)
            if row is not None:
                return PlanDocument.model_validate(row.document)
            if key in DEFAULT_PLANS:
                return DEFAULT_PLANS[key]
        return DEFAULT_PLANS["*"]

    async def plans(
        self, session: AsyncSession
    ) -> list[tuple[str, PlanDocument, ServicePlan | None]]:
        stored = {row.tier: row for row in await repo.plans.all(session)}
        tiers = sorted(set(stored) | set(DEFAULT_PLANS), key=lambda t: (t == "*", t))
        return [
            (
                tier,
                PlanDocument.model_validate(stored[tier].document)
                if tier in stored
                else DEFAULT_PLANS[tier],
                stored.get(tier),
            )
            for tier in tiers
        ]

    async def put_plan(
        self, session: AsyncSession, tier: str, document: PlanDocument, actor: str
    ) -> ServicePlan:
        """Replace a tier's plan; its customers' future tasks follow at the next planning
        (within the planner's interval, or at once with `POST /v1/planning`)."""
        row = await repo.plans.get(session, tier)
        now = utcnow()
        if row is None:
            row = ServicePlan(tier=tier, document={}, updated_at=now, updated_by=actor)
            session.add(row)
        row.document = document.model_dump(mode="json")
        row.updated_at, row.updated_by = now, actor
        await session.flush()
        return row

    # ------------------------------------------------------------ calendar
    def public_holidays(self, start: dt.date, end: dt.date) -> list[Occasion]:
        """Each public holiday once a year, on its first day (a week off is one occasion;
        days off moved around it are not holidays of their own)."""
        return [
            occasion
            for occasion in _first_days_of_holidays(self.holiday_country, start.year, end.year)
            if start <= occasion.on <= end
        ]

    async def occasions(
        self, session: AsyncSession, start: dt.date, end: dt.date
    ) -> list[Occasion]:
        """Public holidays and the company's own dates and club events in [start, end]."""
        own = [
            Occasion(
                on=entry.on,
                kind=entry.kind,
                name=entry.name,
                tiers=entry.tiers,
                channel=entry.channel,
            )
            for entry in await repo.calendar.between(session, start, end)
        ]
        return sorted([*self.public_holidays(start, end), *own], key=lambda o: o.on)

    async def coming_occasions(self, session: AsyncSession, now: dt.datetime) -> list[Occasion]:
        """The occasions planning may meet: a day either side of the planning horizon."""
        return await self.occasions(
            session, now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=368)
        )

    async def add_calendar_entry(
        self, session: AsyncSession, body: CalendarCreate, actor: str
    ) -> CalendarEntry:
        entry = CalendarEntry(
            id=uuid.uuid4(),
            on=body.on,
            kind=body.kind,
            name=body.name,
            tiers=body.tiers,
            channel=body.channel,
            created_at=utcnow(),
            created_by=actor,
        )
        session.add(entry)
        await session.flush()
        return entry

    # ------------------------------------------------------------ planning
    async def replan(self, session: AsyncSession, customer_id: uuid.UUID, now: dt.datetime) -> int:
        """Plan one customer (after an event about it, or on request)."""
        customers = await repo.recipients.planning_facts(session, ids=[customer_id])
        return await self.plan_customers(session, customers, now)

    async def plan_customers(
        self,
        session: AsyncSession,
        customers: Sequence[tuple[uuid.UUID, CustomerFacts]],
        now: dt.datetime,
        occasions: Sequence[Occasion] | None = None,
        typical_days: dict[str, float] | None = None,
    ) -> int:
        """Bring customers' planned tasks in line with their plans and the calendar: new
        occasions due within the planning window become tasks (and `outreach.scheduled`),
        pending ones follow the plan (channel, assignee, due), and those no longer asked
        for are cancelled. A batch is read in a few queries and written in bulk. The
        number of tasks created."""
        if not customers:
            return 0
        ids = [customer_id for customer_id, _ in customers]
        tiers = {facts.tier for _, facts in customers}
        plans = {tier: await self.plan_document(session, tier) for tier in tiers}
        existing = await repo.tasks.planning_view(session, ids)
        cycles = await repo.cycles.of_customers(session, ids)
        if typical_days is None:
            thin = {c.category for found in cycles.values() for c in found}
            typical_days = await repo.cycles.typical_days(session, sorted(thin), MIN_OWN_PURCHASES)
        if occasions is None:
            occasions = await self.coming_occasions(session, now)
        created: list[tuple[uuid.UUID, PlannedTask]] = []
        changed: list[dict[str, Any]] = []
        stale: list[uuid.UUID] = []
        for customer_id, facts in customers:
            new, updates, cancels = self._reconcile(
                CustomerPlanning(
                    facts,
                    plans[facts.tier],
                    existing.get(customer_id, []),
                    cycles.get(customer_id, []),
                ),
                now,
                occasions,
                typical_days,
            )
            created.extend((customer_id, task) for task in new)
            changed.extend(updates)
            stale.extend(cancels)
        await self._write_plans(session, created, changed, stale, now)
        return len(created)

    def upcoming(
        self,
        customer: CustomerPlanning,
        now: dt.datetime,
        occasions: Sequence[Occasion],
        typical_days: dict[str, float],
    ) -> list[PlannedTask]:
        """The customer's planned contacts of the coming year, tasks or not yet."""
        return self._planned(customer, now, None, occasions, typical_days)

    def _planned(
        self,
        customer: CustomerPlanning,
        now: dt.datetime,
        until: dt.datetime | None,
        occasions: Sequence[Occasion],
        typical_days: dict[str, float],
    ) -> list[PlannedTask]:
        """What the plan asks for until `until` (a year when None), with the recurring
        kinds numbered from the tasks the customer already has."""
        existing = customer.tasks
        keep_open = customer.recurring_open
        last_done = {
            kind: max(
                (t.completed_at for t in existing if t.kind == kind and t.completed_at),
                default=None,
            )
            for kind in RECURRING
        }
        planned = [
            task
            for task in plan_customer(
                customer.facts,
                customer.plan,
                now=now,
                until=until,
                cycles=customer.cycles,
                typical_days=typical_days,
                last_revisit=last_done["revisit"],
                last_survey=last_done["survey"],
                calendar=occasions,
            )
            if task.kind not in keep_open
        ]
        for kind in RECURRING:  # the n-th revisit is its own occasion, whatever its date
            if any(t.kind == kind for t in planned):
                count = sum(1 for t in existing if t.kind == kind)
                planned = [
                    replace(t, occasion=f"{kind}:{count + 1}") if t.kind == kind else t
                    for t in planned
                ]
        return planned

    def _reconcile(
        self,
        customer: CustomerPlanning,
        now: dt.datetime,
        occasions: Sequence[Occasion],
        typical_days: dict[str, float],
    ) -> tuple[list[PlannedTask], list[dict[str, Any]], list[uuid.UUID]]:
        """What to create, change and cancel for one customer, from its planned contacts
        and the tasks it has. Only contacts due within the planning window become tasks;
        a pending task the plan moved past the window is moved, not cancelled."""
        existing, plan = customer.tasks, customer.plan
        keep_open = customer.recurring_open
        planned = self._planned(customer, now, now + self.planning_window, occasions, typical_days)
        by_occasion = {t.occasion: t for t in existing}
        wanted = {task.occasion for task in planned}
        unwanted = [
            t
            for t in existing
            if t.kind in PLANNED_KINDS
            and t.kind not in keep_open
            and t.occasion not in wanted
            and t.status == "pending"
            and t.due_at > now
        ]
        if unwanted:  # moved beyond the window, or no longer asked for at all?
            later = {t.occasion: t for t in self.upcoming(customer, now, occasions, typical_days)}
            planned += [later[t.occasion] for t in unwanted if t.occasion in later]
        owner = assignee_for(plan, customer.facts)
        new: list[PlannedTask] = []
        updates: list[dict[str, Any]] = []
        for task in planned:
            found = by_occasion.get(task.occasion)
            if found is None:
                new.append(task)
            elif found.status == "pending" and (found.channel, found.assignee, found.due_at) != (
                task.channel,
                task.assignee,
                task.due_at,
            ):
                updates.append(
                    {
                        "id": found.id,
                        "channel": task.channel,
                        "assignee": task.assignee,
                        "due_at": task.due_at,
                        "basis": task.basis,
                        "updated_at": now,
                    }
                )
        for kept in existing:
            if (
                kept.kind in keep_open
                and kept.status == "pending"
                and (kept.channel, kept.assignee) != (plan.channel_for(kept.kind), owner)
            ):
                updates.append(
                    {
                        "id": kept.id,
                        "channel": plan.channel_for(kept.kind),
                        "assignee": owner,
                        "updated_at": now,
                    }
                )
        wanted = {task.occasion for task in planned}
        cancels = [t.id for t in unwanted if t.occasion not in wanted]
        return new, updates, cancels

    async def _write_plans(
        self,
        session: AsyncSession,
        created: list[tuple[uuid.UUID, PlannedTask]],
        changed: list[dict[str, Any]],
        stale: list[uuid.UUID],
        now: dt.datetime,
    ) -> None:
        count = len(created)
        task_ids = random_uuid_column(count)
        customer_ids = object_column([customer_id for customer_id, _ in created])
        tasks = [planned for _, planned in created]
        await insert_columns(
            session,
            Task.__table__,
            {
                "id": task_ids,
                "customer_id": customer_ids,
                "kind": object_column([t.kind for t in tasks]),
                "occasion": object_column([t.occasion for t in tasks]),
                "channel": object_column([t.channel for t in tasks]),
                "marketing": np.array([t.marketing for t in tasks], dtype=np.bool_),
                "priority": np.array([t.priority for t in tasks], dtype=np.int16),
                "due_at": object_column([t.due_at for t in tasks]),
                "status": "pending",
                "assignee": object_column([t.assignee for t in tasks]),
                "basis": object_column([t.basis for t in tasks]),
                "decisions": object_column([[] for _ in tasks]),
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            count,
        )
        events = [
            outbox_row(
                producer=PRODUCER,
                event_type="outreach.scheduled",
                customer_id=customer_id,
                data={},
                occurred_at=now,
                created_at=now,
                validated_json={
                    "task_id": uuid.UUID(bytes=task_id.tobytes()),
                    "kind": planned.kind,
                    "channel": planned.channel,
                    "due_at": planned.due_at,
                    "assignee": planned.assignee,
                    "occasion": planned.occasion,
                },
            )
            for task_id, (customer_id, planned) in zip(task_ids, created, strict=True)
        ]
        await record_events(session, events)
        if changed:
            await session.execute(update(Task), changed)
        if stale:
            for task in (await repo.tasks.many(session, stale)).values():
                task.status = "cancelled"
                self.decide(task, now, "cancelled", "no longer asked for by the plan or calendar")
        await session.flush()

    @staticmethod
    def facts(recipient: Recipient) -> CustomerFacts:
        return CustomerFacts(
            timezone=recipient.timezone,
            birthday=recipient.birthday,
            birthday_calendar=recipient.birthday_calendar,
            key_dates=recipient.key_dates or [],
            contacts=recipient.contacts or [],
            account_manager=recipient.account_manager,
            tier=recipient.tier,
        )

    async def add_event_tasks(
        self, session: AsyncSession, asked: Sequence[EventTask], now: dt.datetime
    ) -> None:
        """Tasks events ask for (a follow-up, a hand-over, a review), each once: an
        occasion the customer already has a task for asks for nothing more."""
        if not asked:
            return
        have = await repo.tasks.occasions_of(
            session, list({task.recipient.customer_id for task in asked})
        )
        plans: dict[str | None, PlanDocument] = {}
        created: list[tuple[uuid.UUID, PlannedTask]] = []
        for task in asked:
            recipient = task.recipient
            if (recipient.customer_id, task.occasion) in have:
                continue
            have.add((recipient.customer_id, task.occasion))
            if task.tier not in plans:
                plans[task.tier] = await self.plan_document(session, task.tier)
            plan = plans[task.tier]
            planned = PlannedTask(
                task.kind,
                task.occasion,
                plan.channel_for(task.kind),
                task.due_at,
                assignee_for(plan, self.facts(recipient)) or recipient.account_manager,
                task.basis,
            )
            created.append((recipient.customer_id, planned))
        await self._write_plans(session, created, [], [], now)

    # ------------------------------------------------------------ from events
    async def note_customers(
        self, session: AsyncSession, changes: Sequence[tuple[EventEnvelope, Mapping[str, Any]]]
    ) -> None:
        """Take the fields outreach needs from a poll of customer events (each with its
        data's fields), in order, unless a newer event already set them; then plan the
        customers touched (not the erased) together, each row read once."""
        recipients = await repo.recipients.get_or_add_many(
            session, list(dict.fromkeys(event.customer_id for event, _ in changes))
        )
        for event, data in changes:
            recipient = recipients[event.customer_id]
            if recipient.erased_at is None:
                _take_fields(recipient, data, stamp_of(event))
        await session.flush()
        touched = [cid for cid, recipient in recipients.items() if recipient.erased_at is None]
        if touched:
            customers = await repo.recipients.planning_facts(session, ids=touched)
            await self.plan_customers(session, customers, utcnow())

    async def note_tiers(
        self, session: AsyncSession, changes: Sequence[tuple[uuid.UUID, str, dt.datetime]]
    ) -> None:
        """Tiers from a poll of `tier.changed` (customer, tier, when), in order, unless a
        newer one was taken. A new tier's plan applies to future tasks (the pending
        recurring ones go: its cadence counts from now; a customer the poll leaves at the
        tier it had keeps them); entering the top tier asks for a hand-over to a dedicated
        manager, leaving it for a review. Then the customers are planned together, each
        row read once."""
        recipients = await repo.recipients.get_or_add_many(
            session, list(dict.fromkeys(customer_id for customer_id, _, _ in changes))
        )
        now = utcnow()
        taken: dict[uuid.UUID, str | None] = {}  # customer -> its tier before the poll
        asked: list[EventTask] = []
        for customer_id, tier, at in changes:
            recipient = recipients[customer_id]
            times = dict(recipient.field_times or {})
            if recipient.erased_at is not None or not take(times, "tier", Stamp(None, at)):
                continue
            previous = recipient.tier
            taken.setdefault(customer_id, previous)
            recipient.tier, recipient.field_times = tier, times
            moved = {"from_tier": previous, "to_tier": tier}
            if tier == TOP_TIER and previous != TOP_TIER:
                why = {**moved, "why": "assign a dedicated manager"}
                asked.append(
                    EventTask(recipient, tier, "hand_over", f"hand_over:{at.isoformat()}", now, why)
                )
            elif previous == TOP_TIER and tier != TOP_TIER:
                why = {**moved, "why": "the customer left the top tier"}
                asked.append(
                    EventTask(recipient, tier, "review", f"review:{at.isoformat()}", now, why)
                )
        retiered = [c for c, before in taken.items() if recipients[c].tier != before]
        for task in await repo.tasks.open_of(session, retiered, RECURRING):
            if task.status == "pending":
                task.status = "cancelled"
                reason = f"the tier changed to {recipients[task.customer_id].tier}"
                self.decide(task, now, "cancelled", reason)
        await session.flush()
        await self.add_event_tasks(session, asked, now)
        if taken:
            customers = await repo.recipients.planning_facts(session, ids=list(taken))
            await self.plan_customers(session, customers, now)

    async def note_purchases(
        self,
        session: AsyncSession,
        purchases: Sequence[tuple[uuid.UUID, str | None, dt.datetime]],
    ) -> None:
        """Purchases (customer, category, when) from a poll move each category's predicted
        next one: the reminders follow, the customers planned together."""
        if not purchases:
            return
        await repo.cycles.add_purchases(
            session, [(customer_id, category or "*", at) for customer_id, category, at in purchases]
        )
        customers = list(dict.fromkeys(customer_id for customer_id, _, _ in purchases))
        facts = await repo.recipients.planning_facts(session, ids=customers)
        await self.plan_customers(session, facts, utcnow())

    async def complaint_opened(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        complaint_id: uuid.UUID,
        at: dt.datetime,
    ) -> None:
        await repo.complaints.note(session, complaint_id, customer_id, is_open=True, at=at)

    async def complaint_closed(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        complaint_id: uuid.UUID,
        at: dt.datetime,
    ) -> None:
        """Marketing held for the complaint goes again; a follow-up is due two days on."""
        await repo.complaints.note(session, complaint_id, customer_id, is_open=False, at=at)
        now = utcnow()
        if not await repo.complaints.customers_with_open(session, [customer_id]):
            for task in await repo.tasks.held_for_complaint(session, customer_id):
                task.status = "pending"
                task.due_at = max(task.due_at, now)
                self.decide(task, now, "released", "the customer's complaints are closed")
        recipient = await repo.recipients.get_or_add(session, customer_id)
        if recipient.erased_at is None:
            follow_up = EventTask(
                recipient,
                recipient.tier,
                "complaint_follow_up",
                f"complaint_follow_up:{complaint_id}",
                max(at + FOLLOW_UP_AFTER, now),
                {"complaint_id": str(complaint_id)},
            )
            await self.add_event_tasks(session, [follow_up], now)
        await session.flush()

    async def erase(self, session: AsyncSession, customer_id: uuid.UUID, at: dt.datetime) -> None:
        """Drop the personal data and cancel every open task of the customer."""
        recipient = await repo.recipients.get_or_add(session, customer_id)
        recipient.erased_at = recipient.erased_at or at
        recipient.name = recipient.birthday = recipient.timezone = None
        recipient.key_dates, recipient.contacts, recipient.consent = [], [], {}
        for task in await repo.tasks.of_customer(session, customer_id):
            task.notes = None
            if task.status in (*OPEN_STATUSES, "held"):
                task.status = "cancelled"
                self.decide(task, at, "cancelled", "the customer was erased")
        await session.flush()

    async def customer_upcoming(
        self, session: AsyncSession, customer_id: uuid.UUID, access: CustomerAccess
    ) -> Upcoming:
        """A customer's coming year: its open tasks and the contacts its plan and the
        calendar will make tasks of, as the caller may see them."""
        now = utcnow()
        found = await repo.recipients.planning_facts(session, ids=[customer_id])
        if not found or not access.may_see_customer(found[0][1].account_manager):
            raise NotFound(f"No customer {customer_id} known to outreach.")
        facts = found[0][1]
        tasks = await repo.tasks.of_customer(session, customer_id)
        customer = CustomerPlanning(
            facts,
            await self.plan_document(session, facts.tier),
            tasks,
            (await repo.cycles.of_customers(session, [customer_id])).get(customer_id, []),
        )
        cycles = sorted({c.category for c in customer.cycles})
        planned = self.upcoming(
            customer,
            now,
            await self.coming_occasions(session, now),
            await repo.cycles.typical_days(session, cycles, MIN_OWN_PURCHASES),
        )
        made = {t.occasion for t in tasks}
        items = [
            UpcomingContact(task_id=t.id, status=t.status, **_contact_fields(t))
            for t in tasks
            if t.status in (*OPEN_STATUSES, "held")
        ] + [
            UpcomingContact(task_id=None, status="planned", **_contact_fields(p))
            for p in planned
            if p.occasion not in made
        ]
        manager = facts.account_manager
        return Upcoming(
            customer_id=customer_id,
            planned_until=now + HORIZON,
            tasks_until=now + self.planning_window,
            items=sorted(
                (i for i in items if access.may_see_work((i.assignee,), manager)),
                key=lambda i: (i.due_at, i.occasion),
            ),
        )

    # ------------------------------------------------------------ tasks by hand
    async def visible_task(
        self,
        session: AsyncSession,
        task_id: uuid.UUID,
        access: CustomerAccess,
        *,
        lock: bool = False,
    ) -> Task:
        task = await repo.tasks.get(session, task_id, lock=lock)
        if task is None:
            raise NotFound(f"No task {task_id}.")
        manager = None
        if access.manager_scope is not None:
            recipient = await repo.recipients.get(session, task.customer_id)
            manager = recipient.account_manager if recipient else None
        if not access.may_see_work((task.assignee,), manager):
            raise NotFound(f"No task {task_id}.")
        return task

    async def complete(
        self,
        session: AsyncSession,
        task_id: uuid.UUID,
        body: TaskCompletion,
        access: CustomerAccess,
    ) -> Task:
        """Record what came of a contact made by hand."""
        task = await self.visible_task(session, task_id, access, lock=True)
        if task.channel in ("sms", "email"):
            raise Conflict(
                "An automated contact is delivered by the service, not completed by hand."
            )
        if task.status not in ("pending", "deferred", "ready", "held"):
            raise Conflict(f"The task is {task.status}; only an open task can be completed.")
        now = utcnow()
        task.status = body.outcome
        task.outcome = body.outcome
        task.notes = body.notes
        task.completed_at = now
        task.contacted_at = task.contacted_at or now
        self.decide(task, now, body.outcome, f"completed by {access.principal.user}")
        await self.announce(session, task, body.outcome, body.notes)
        await session.flush()
        return task

    async def reschedule(
        self,
        session: AsyncSession,
        task_id: uuid.UUID,
        body: TaskReschedule,
        access: CustomerAccess,
    ) -> Task:
        """Snooze or bring forward an open task."""
        task = await self.visible_task(session, task_id, access, lock=True)
        if task.status not in ("pending", "deferred", "ready"):
            raise Conflict(f"The task is {task.status}; only an open task can be rescheduled.")
        now = utcnow()
        task.due_at = body.due_at.astimezone(dt.UTC)
        task.status = "pending"
        self.decide(task, now, "rescheduled", body.reason or f"by {access.principal.user}")
        await session.flush()
        return task

    async def reassign(
        self, session: AsyncSession, task_id: uuid.UUID, body: TaskReassign, access: CustomerAccess
    ) -> Task:
        task = await self.visible_task(session, task_id, access, lock=True)
        if task.status not in (*OPEN_STATUSES, "held"):
            raise Conflict(f"The task is {task.status}; only an open task can be reassigned.")
        now = utcnow()
        self.decide(
            task,
            now,
            "reassigned",
            f"{task.assignee} -> {body.assignee}: {body.reason or ''}".strip(),
        )
        task.assignee = body.assignee
        await session.flush()
        return task

    # ------------------------------------------------------------ calendar feeds
    async def new_feed(
        self, session: AsyncSession, access: CustomerAccess
    ) -> tuple[str, FeedToken]:
        """A new secret feed address for the caller's worklist; earlier ones stop working."""
        if not access.principal.roles & {"admin", "account_manager", "agent"}:
            raise Forbidden("Calendar feeds are for people with a worklist.")
        now = utcnow()
        await repo.feeds.revoke_all(session, access.principal.user, now)
        token = secrets.token_urlsafe(32)
        row = FeedToken(
            digest=feed_digest(token),
            assignee=access.principal.user,
            roles=sorted(access.principal.roles),
            created_at=now,
        )
        session.add(row)
        await session.flush()
        return token, row

    async def revoke_feed(self, session: AsyncSession, access: CustomerAccess) -> None:
        await repo.feeds.revoke_all(session, access.principal.user, utcnow())

    # ------------------------------------------------------------ shared
    @staticmethod
    def decide(task: Task, at: dt.datetime, decision: str, reason: str) -> None:
        """Record a decision on the task, with its moment and reason."""
        task.decisions = [
            *(task.decisions or []),
            {"at": at.isoformat(), "decision": decision, "reason": reason},
        ]
        task.updated_at = at

    @staticmethod
    async def announce(session: AsyncSession, task: Task, outcome: str, reason: str | None) -> None:
        await record_event(
            session,
            producer=PRODUCER,
            event_type="outreach.completed",
            customer_id=task.customer_id,
            data=OutreachCompleted(
                task_id=task.id,
                kind=task.kind,
                channel=task.channel,
                outcome=outcome,
                reason=reason,
            ),
        )


outreach_service = OutreachService()


def _take_fields(recipient: Recipient, data: Mapping[str, Any], stamp: Stamp) -> None:
    """The customer fields outreach keeps, each unless a newer event already set it."""
    times = dict(recipient.field_times or {})
    for field in CUSTOMER_FIELDS:
        if field not in data or not take(times, field, stamp):
            continue
        value = data[field]
        if field == "birthday" and value is not None:
            value = dt.date.fromisoformat(str(value))
        if field in ("key_dates", "contacts"):
            value = list(value or [])
        if field == "consent":
            value = dict(value or {})
        setattr(recipient, field, value)
    recipient.field_times = times
