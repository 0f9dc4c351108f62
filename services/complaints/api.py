"""Complaints routes: thin, they parse, authorize, call the service and shape the answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.complaints import sla
from services.complaints.models import Complaint, ComplaintEntry
from services.complaints.repository import ComplaintFilters
from services.complaints.schemas import (
    DEFAULT_POLICY,
    Assignment,
    ComplaintCreate,
    ComplaintDetail,
    ComplaintOut,
    ComplaintStats,
    CycleOut,
    EntryOut,
    HandOver,
    SlaOut,
    SlaPolicyDocument,
    SlaPolicyOut,
    StatsGroupBy,
    TransitionCreate,
)
from services.complaints.service import complaints_service
from services.complaints.stats import complaint_stats
from services.complaints.workflow import Severity, Status, allowed_moves
from shared.access import CustomerAccess, access_of
from shared.app import SessionDep
from shared.auth import Principal, require_roles
from shared.fields import Timestamp
from shared.idempotency import IdempotencyKey, idempotent
from shared.openapi import example_body, problems
from shared.pagination import Cursor, Limit, Page, decode_time_key, page_of

router = APIRouter(tags=["complaints"])

Reader = Annotated[Principal, Depends(require_roles("account_manager", "agent", "analyst"))]
Worker = Annotated[Principal, Depends(require_roles("account_manager", "agent"))]
Analyst = Annotated[Principal, Depends(require_roles("analyst"))]
Admin = Annotated[Principal, Depends(require_roles())]
UserFilter = Annotated[str | None, Query(min_length=1, max_length=100)]
SlaPolicyBody = Annotated[
    SlaPolicyDocument, example_body(office_hours=DEFAULT_POLICY.model_dump(mode="json"))
]


def present(complaint: Complaint, access: CustomerAccess) -> ComplaintOut:
    """The API view of a complaint; free text about people is withheld from analysts."""
    personal = access.sees_personal_details
    return ComplaintOut(
        **{
            field: getattr(complaint, field)
            for field in ComplaintOut.model_fields
            if field not in ("breached", "allowed_moves")
        }
        | ({} if personal else {"description": None, "remedy": None, "customer_told": None}),
        breached=complaint.respond_breached or complaint.resolve_breached,
        allowed_moves=list(allowed_moves(complaint.status, complaint.paused_from)),
    )


def _hours(value: dt.timedelta) -> float:
    return round(value.total_seconds() / 3600, 3)


def _detail(
    complaint: Complaint,
    history: list[ComplaintEntry],
    clock: sla.Clock,
    access: CustomerAccess,
) -> ComplaintDetail:
    personal = access.sees_personal_details
    return ComplaintDetail(
        **present(complaint, access).model_dump(),
        sla=SlaOut(
            respond_by=clock.respond_due_at,
            responded_at=clock.responded_at,
            respond_breached=clock.respond_breached,
            resolve_by=clock.current.due_at,
            resolve_breached=clock.current.breached,
            paused=clock.paused,
            cycles=[
                CycleOut(
                    started_at=cycle.started_at,
                    ended_at=cycle.ended_at,
                    resolve_by=cycle.due_at,
                    breached=cycle.breached,
                    business_hours=_hours(cycle.business_time),
                    wall_hours=_hours(cycle.wall_time),
                )
                for cycle in clock.cycles
            ],
        ),
        history=[
            EntryOut(
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                from_status=entry.from_status,
                to_status=entry.to_status,
                note=entry.note if personal else None,
                details=entry.details,
            )
            for entry in history
        ],
    )


@router.post(
    "/complaints", status_code=201, responses=problems(409, 410), response_model=ComplaintOut
)
async def open_complaint(
    body: ComplaintCreate,
    session: SessionDep,
    principal: Worker,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ComplaintOut:
    """Record a complaint; whoever received it owns it until the customer confirms."""
    access = access_of(principal)

    async def create() -> ComplaintOut:
        return present(await complaints_service.open(session, body, access), access)

    result = await idempotent(
        session,
        scope=f"complaints:{principal.user}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location="/v1/complaints/{id}",
    )
    return ComplaintOut.model_validate(result)


@router.get("/complaints", response_model=Page[ComplaintOut])
async def list_complaints(
    session: SessionDep,
    principal: Reader,
    status: Status | None = None,
    severity: Severity | None = None,
    owner: UserFilter = None,
    assignee: UserFilter = None,
    customer_id: uuid.UUID | None = None,
    tier: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    breached: bool | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[ComplaintOut]:
    """Complaints, newest first, filtered by status, severity, owner, assignee, customer,
    tier (when the complaint arrived) and breach."""
    access = access_of(principal)
    after = decode_time_key(cursor)
    filters = ComplaintFilters(
        status=status,
        severity=severity,
        owner=owner,
        assignee=assignee,
        customer_id=customer_id,
        tier=tier,
        breached=breached,
    )
    rows = await complaints_service.search(session, filters, access, after=after, limit=limit + 1)
    return page_of(
        rows, limit, lambda row: present(row, access), lambda c: (c.opened_at.isoformat(), c.id)
    )


@router.get("/complaints/stats", response_model=ComplaintStats)
async def stats(
    session: SessionDep,
    _: Analyst,
    period_from: Annotated[Timestamp | None, Query(alias="from")] = None,
    period_to: Annotated[Timestamp | None, Query(alias="to")] = None,
    severity: Severity | None = None,
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    tier: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    owner: UserFilter = None,
    group_by: StatsGroupBy | None = None,
) -> ComplaintStats:
    """Counts by status, time to respond and resolve (median, 90th percentile; business
    and wall hours), SLA compliance, reopen rate, satisfaction, and the return rate
    (complainants who bought again within 90 days of closure), for complaints opened in
    the period."""
    return await complaint_stats(
        session,
        period_from=period_from,
        period_to=period_to,
        severity=severity,
        category=category,
        tier=tier,
        owner=owner,
        group_by=group_by,
    )


@router.get("/complaints/{complaint_id}", response_model=ComplaintDetail)
async def get_complaint(
    complaint_id: uuid.UUID, session: SessionDep, principal: Reader
) -> ComplaintDetail:
    """A complaint with its SLA clock and its whole history."""
    access = access_of(principal)
    complaint, history, clock = await complaints_service.get(session, complaint_id, access)
    return _detail(complaint, history, clock, access)


@router.post(
    "/complaints/{complaint_id}/transitions",
    responses=problems(409),
    response_model=ComplaintDetail,
)
async def transition(
    complaint_id: uuid.UUID, body: TransitionCreate, session: SessionDep, principal: Worker
) -> ComplaintDetail:
    """Move the complaint on (409 names the allowed moves when this one is not)."""
    access = access_of(principal)
    complaint, history, clock = await complaints_service.transition(
        session, complaint_id, body, access
    )
    return _detail(complaint, history, clock, access)


@router.post(
    "/complaints/{complaint_id}/hand-over", responses=problems(409), response_model=ComplaintOut
)
async def hand_over(
    complaint_id: uuid.UUID, body: HandOver, session: SessionDep, principal: Worker
) -> ComplaintOut:
    """Give first-contact ownership to someone else, with the reason (recorded)."""
    access = access_of(principal)
    return present(await complaints_service.hand_over(session, complaint_id, body, access), access)


@router.post(
    "/complaints/{complaint_id}/assignment", responses=problems(409), response_model=ComplaintOut
)
async def assign(
    complaint_id: uuid.UUID, body: Assignment, session: SessionDep, principal: Worker
) -> ComplaintOut:
    """Give the work to someone; the owner stays accountable."""
    access = access_of(principal)
    return present(await complaints_service.assign(session, complaint_id, body, access), access)


@router.get("/sla-policies", response_model=SlaPolicyOut, tags=["sla"])
async def get_sla_policy(session: SessionDep, _: Reader) -> SlaPolicyOut:
    """The SLA policy in force: targets by severity and tier, calendar, ladder."""
    row = await complaints_service.policy_row(session)
    return SlaPolicyOut.model_validate(row, from_attributes=True)


@router.put("/sla-policies", response_model=SlaPolicyOut, tags=["sla"])
async def put_sla_policy(
    body: SlaPolicyBody, session: SessionDep, principal: Admin
) -> SlaPolicyOut:
    """Replace the SLA policy (a new version); open complaints' deadlines follow it."""
    row = await complaints_service.replace_policy(session, body, principal.user)
    return SlaPolicyOut.model_validate(row, from_attributes=True)
