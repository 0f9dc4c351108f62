"""Outreach routes: thin, they parse, authorize, call the service and shape the answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import icalendar
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.outreach import repository as repo
from services.outreach.models import Task
from services.outreach.repository import TaskFilters
from services.outreach.schemas import (
    DEFAULT_PLANS,
    CalendarCreate,
    CalendarEntryOut,
    FeedOut,
    Kind,
    PlanDocument,
    PlanOut,
    TaskCompletion,
    TaskOut,
    TaskReassign,
    TaskReschedule,
    TaskStatus,
    Upcoming,
)
from services.outreach.service import feed_digest, outreach_service
from shared.access import CustomerAccess, access_of
from shared.app import SessionDep
from shared.auth import Principal, require_roles
from shared.db import utcnow
from shared.errors import InvalidInput, Unauthorized
from shared.fields import Day, Timestamp
from shared.openapi import example_body, problems
from shared.pagination import Cursor, Limit, Page, decode_time_key, page_of

router = APIRouter(tags=["outreach"])

Reader = Annotated[Principal, Depends(require_roles("account_manager", "agent", "analyst"))]
Worker = Annotated[Principal, Depends(require_roles("account_manager", "agent"))]
Marketer = Annotated[Principal, Depends(require_roles("analyst"))]
Admin = Annotated[Principal, Depends(require_roles())]
TierPath = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_*.-]+$")]
ICS = "text/calendar; charset=utf-8"
PlanBody = Annotated[
    PlanDocument, example_body(top_tier=DEFAULT_PLANS["A"].model_dump(mode="json"))
]


def present(task: Task, access: CustomerAccess) -> TaskOut:
    out = TaskOut.model_validate(task, from_attributes=True)
    if not access.sees_personal_details:
        out.notes = None
    out.basis = shown_basis(out.basis, access)
    return out


def shown_basis(basis: dict[str, Any], access: CustomerAccess) -> dict[str, Any]:
    """A task's basis as the caller may see it: without whose date it is for analysts."""
    if access.sees_personal_details:
        return basis
    return {k: v for k, v in basis.items() if k != "of"}


# ------------------------------------------------------------------ plans
@router.get("/plans", response_model=list[PlanOut], tags=["plans"])
async def list_plans(session: SessionDep, _: Reader) -> list[PlanOut]:
    """Every tier's service plan (`*`: tiers without one of their own)."""
    return [
        PlanOut(
            tier=tier,
            document=document,
            updated_at=row.updated_at if row else None,
            updated_by=row.updated_by if row else None,
        )
        for tier, document, row in await outreach_service.plans(session)
    ]


@router.get("/plans/{tier}", response_model=PlanOut, tags=["plans"])
async def get_plan(tier: TierPath, session: SessionDep, _: Reader) -> PlanOut:
    """A tier's service plan (its own, else the `*` plan)."""
    row = await repo.plans.get(session, tier)
    return PlanOut(
        tier=tier,
        document=await outreach_service.plan_document(session, tier),
        updated_at=row.updated_at if row else None,
        updated_by=row.updated_by if row else None,
    )


@router.put("/plans/{tier}", response_model=PlanOut, tags=["plans"])
async def put_plan(
    tier: TierPath, body: PlanBody, session: SessionDep, principal: Admin
) -> PlanOut:
    """Replace a tier's plan: cadences, owner, channels, gifts, budget, quiet hours."""
    row = await outreach_service.put_plan(session, tier, body, principal.user)
    return PlanOut(tier=tier, document=body, updated_at=row.updated_at, updated_by=row.updated_by)


# ------------------------------------------------------------------ calendar
@router.get("/calendar", response_model=list[CalendarEntryOut], tags=["calendar"])
async def get_calendar(
    session: SessionDep,
    _: Reader,
    start: Annotated[Day | None, Query(alias="from")] = None,
    end: Annotated[Day | None, Query(alias="to")] = None,
) -> list[CalendarEntryOut]:
    """Public holidays and the company's dates and club events (default: the next year)."""
    first = start or utcnow().date()
    last = end or first + dt.timedelta(days=366)
    if last < first or (last - first).days > 3 * 366:
        raise InvalidInput(
            "'to' must follow 'from' by at most three years.",
            errors=[{"field": "to", "message": "out of range", "type": "range"}],
        )
    own = {
        (entry.on, entry.name): entry.id
        for entry in await repo.calendar.between(session, first, last)
    }
    return [
        CalendarEntryOut(
            id=own.get((occasion.on, occasion.name)),
            on=occasion.on,
            kind=occasion.kind,
            name=occasion.name,
            tiers=list(occasion.tiers or []),
            channel=occasion.channel or "plan",
        )
        for occasion in await outreach_service.occasions(session, first, last)
    ]


@router.post("/calendar", status_code=201, response_model=CalendarEntryOut, tags=["calendar"])
async def add_calendar_entry(
    body: CalendarCreate, session: SessionDep, principal: Marketer, response: Response
) -> CalendarEntryOut:
    """Add a company date or a club event with the tiers it invites."""
    entry = await outreach_service.add_calendar_entry(session, body, principal.user)
    response.headers["Location"] = f"/v1/calendar?from={entry.on}&to={entry.on}"
    return CalendarEntryOut.model_validate(entry, from_attributes=True)


@router.post("/planning", tags=["plans"])
async def plan_now(session: SessionDep, _: Admin, customer_id: uuid.UUID) -> dict[str, int]:
    """Plan one customer's contacts now (the planner does everyone on its schedule)."""
    created = await outreach_service.replan(session, customer_id, utcnow())
    return {"created": created}


@router.get("/customers/{customer_id}/upcoming", response_model=Upcoming, tags=["plans"])
async def customer_upcoming(
    customer_id: uuid.UUID, session: SessionDep, principal: Reader
) -> Upcoming:
    """A customer's coming year of contacts: its open tasks, and what its plan and the
    calendar will make tasks of when the planning window reaches them (`planned`)."""
    access = access_of(principal)
    upcoming = await outreach_service.customer_upcoming(session, customer_id, access)
    for item in upcoming.items:
        item.basis = shown_basis(item.basis, access)
    return upcoming


# ------------------------------------------------------------------ tasks
@router.get("/tasks", response_model=Page[TaskOut], tags=["tasks"])
async def list_tasks(
    session: SessionDep,
    principal: Reader,
    customer_id: uuid.UUID | None = None,
    assignee: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: TaskStatus | None = None,
    kind: Kind | None = None,
    due_before: Timestamp | None = None,
    due_after: Timestamp | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[TaskOut]:
    """Tasks by due moment: an assignee's worklist (`?assignee=...&status=ready`), a
    customer's contacts, a window (`due_after`, `due_before`)."""
    access = access_of(principal)
    after = decode_time_key(cursor)
    filters = TaskFilters(
        customer_id=customer_id,
        assignee=assignee,
        status=status,
        kind=kind,
        due_before=due_before,
        due_after=due_after,
    )
    rows = await repo.tasks.search(session, filters, access, after=after, limit=limit + 1)
    return page_of(
        rows, limit, lambda row: present(row, access), lambda t: (t.due_at.isoformat(), t.id)
    )


@router.get("/tasks/{task_id}", response_model=TaskOut, tags=["tasks"])
async def get_task(task_id: uuid.UUID, session: SessionDep, principal: Reader) -> TaskOut:
    """A task with every guardrail decision and its delivery."""
    access = access_of(principal)
    return present(await outreach_service.visible_task(session, task_id, access), access)


@router.post(
    "/tasks/{task_id}/complete", responses=problems(409), response_model=TaskOut, tags=["tasks"]
)
async def complete_task(
    task_id: uuid.UUID, body: TaskCompletion, session: SessionDep, principal: Worker
) -> TaskOut:
    """Record the outcome of a call, visit, letter or gift."""
    access = access_of(principal)
    return present(await outreach_service.complete(session, task_id, body, access), access)


@router.post(
    "/tasks/{task_id}/reschedule", responses=problems(409), response_model=TaskOut, tags=["tasks"]
)
async def reschedule_task(
    task_id: uuid.UUID, body: TaskReschedule, session: SessionDep, principal: Worker
) -> TaskOut:
    """Snooze or move an open task."""
    access = access_of(principal)
    return present(await outreach_service.reschedule(session, task_id, body, access), access)


@router.post(
    "/tasks/{task_id}/reassign", responses=problems(409), response_model=TaskOut, tags=["tasks"]
)
async def reassign_task(
    task_id: uuid.UUID, body: TaskReassign, session: SessionDep, principal: Worker
) -> TaskOut:
    """Give an open task to someone else."""
    access = access_of(principal)
    return present(await outreach_service.reassign(session, task_id, body, access), access)


# ------------------------------------------------------------------ calendar feeds
@router.post("/feeds", status_code=201, response_model=FeedOut, tags=["feeds"])
async def new_feed(
    session: SessionDep, principal: Worker, request: Request, response: Response
) -> FeedOut:
    """A secret iCalendar address of your worklist for your calendar app (it replaces
    any earlier one)."""
    token, row = await outreach_service.new_feed(session, access_of(principal))
    url = str(request.url_for("worklist_feed", token=token))
    response.headers["Location"] = url
    return FeedOut(url=url, assignee=row.assignee, created_at=row.created_at)


@router.delete("/feeds", status_code=204, tags=["feeds"])
async def revoke_feed(session: SessionDep, principal: Worker) -> None:
    """Stop your calendar feed address from working."""
    await outreach_service.revoke_feed(session, access_of(principal))


@router.get(
    "/feeds/{token}.ics",
    name="worklist_feed",
    response_class=Response,
    responses={200: {"content": {ICS: {}}}, **problems(401)},
    tags=["feeds"],
)
async def worklist_feed(
    token: Annotated[str, Path(min_length=20, max_length=100)], session: SessionDep
) -> Response:
    """An assignee's open tasks as an iCalendar feed (RFC 5545); the secret address is
    the credential, since calendar apps cannot send an API key."""
    row = await repo.feeds.active(session, feed_digest(token))
    if row is None:
        raise Unauthorized("This feed address is not known or was revoked.")
    principal = Principal(row.assignee, frozenset(row.roles))
    access = access_of(principal)
    now = utcnow()
    tasks = await repo.tasks.search(
        session,
        TaskFilters(assignee=row.assignee, due_after=now - dt.timedelta(days=30)),
        access,
        after=None,
        limit=500,
    )
    feed = icalendar.Calendar()
    feed.add("prodid", "-//crm-retention//outreach worklist//EN")
    feed.add("version", "2.0")
    feed.add("x-wr-calname", f"Customer contacts: {row.assignee}")
    for task in tasks:
        if task.status in ("cancelled", "skipped"):
            continue
        event = icalendar.Event()
        event.add("uid", f"{task.id}@crm-retention")
        event.add("dtstamp", now)
        event.add("dtstart", task.due_at)
        event.add("dtend", task.due_at + dt.timedelta(minutes=30))
        event.add("summary", f"{task.kind.replace('_', ' ')} ({task.channel})")
        # Only what the assignee may see: the kind, the channel and the customer's id.
        event.add("description", f"Customer {task.customer_id}; task {task.id}; {task.status}")
        event.add(
            "status",
            "CONFIRMED" if task.status in ("pending", "ready", "deferred") else "CANCELLED",
        )
        feed.add_component(event)
    return Response(feed.to_ical(), media_type=ICS)
