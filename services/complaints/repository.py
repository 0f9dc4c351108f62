"""All of complaints' SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from services.complaints.models import (
    Complaint,
    ComplaintEntry,
    ComplaintFigures,
    Escalation,
    KnownCustomer,
    SlaPolicy,
)
from services.complaints.sla import Step
from services.complaints.workflow import SEVERITIES, STATUSES
from shared.access import CustomerAccess
from shared.db import (
    column_in,
    expire_held,
    get_or_add_locked,
    insert_ignoring_duplicates,
    upsert_from_select,
)

# History entries that move the status (the SLA clock is computed from these).
STATUS_ACTIONS = ("opened", "transition")
RETURN_WINDOW = dt.timedelta(days=90)


# What a complaint is counted by, packed into one code (`tally_of`), so that the
# statistics group a million rows by one small column: each part's number of values.
TALLY_PARTS = (len(STATUSES), len(SEVERITIES), 3, 2, 2)  # status, severity, met, reopened, back
MET_CODES = {False: 0, True: 1, None: 2}


@dataclass(frozen=True)
class Tally:
    status: str
    severity: str
    met_sla: bool | None
    reopened: bool
    returned: bool


def tally_of(code: int) -> Tally:
    """The parts of a `complaint_figures.tally` code."""
    parts = []
    for size in TALLY_PARTS:
        code, part = divmod(code, size)
        parts.append(part)
    status, severity, met, reopened, returned = parts
    met_sla = next(value for value, number in MET_CODES.items() if number == met)
    return Tally(STATUSES[status], SEVERITIES[severity], met_sla, bool(reopened), bool(returned))


def _tally_code() -> ColumnElement[int]:
    parts: list[ColumnElement[int]] = [
        case({name: code for code, name in enumerate(STATUSES)}, value=Complaint.status),
        case({name: code for code, name in enumerate(SEVERITIES)}, value=Complaint.severity),
        case(
            (Complaint.met_sla.is_(None), MET_CODES[None]),
            (Complaint.met_sla.is_(True), MET_CODES[True]),
            else_=MET_CODES[False],
        ),
        case((Complaint.reopen_count > 0, 1), else_=0),
        case((Complaint.returned_at.is_not(None), 1), else_=0),
    ]
    code, scale = parts[0], TALLY_PARTS[0]
    for part, size in zip(parts[1:], TALLY_PARTS[1:], strict=True):
        code, scale = code + part * scale, scale * size
    return code


def figures_of(condition: ColumnElement[bool]) -> Select[Any]:
    """The `complaint_figures` rows of the complaints that meet `condition`."""
    query: Select[Any] = select(  # type: ignore[assignment]
        Complaint.id.label("complaint_id"),
        Complaint.opened_at,
        _tally_code().label("tally"),
        Complaint.severity,
        Complaint.category,
        Complaint.tier,
        Complaint.owner,
        Complaint.closed_at,
        Complaint.satisfaction,
        Complaint.respond_business_bucket,
        Complaint.respond_wall_bucket,
        Complaint.resolve_business_bucket,
        Complaint.resolve_wall_bucket,
    )
    return query.where(condition)


def refresh_figures(dialect: str, condition: ColumnElement[bool]) -> Any:
    """The statement that brings `complaint_figures` in step with the complaints that
    meet `condition` (`true()` for all of them)."""
    return upsert_from_select(
        dialect, ComplaintFigures.__table__, figures_of(condition), ["complaint_id"]
    )


@event.listens_for(Session, "after_flush")
def sync_figures(session: Session, _: UOWTransaction) -> None:
    """Every flush that adds or changes complaints refreshes their figures in the same
    transaction, so no write path can leave the statistics behind."""
    ids = [row.id for row in (*session.new, *session.dirty) if isinstance(row, Complaint)]
    if ids:
        connection = session.connection()
        connection.execute(refresh_figures(connection.dialect.name, Complaint.id.in_(ids)))


@dataclass(frozen=True)
class ComplaintFilters:
    status: str | None = None
    severity: str | None = None
    owner: str | None = None
    assignee: str | None = None
    customer_id: uuid.UUID | None = None
    tier: str | None = None
    breached: bool | None = None


def visible_to(access: CustomerAccess) -> ColumnElement[bool] | None:
    """The complaints a principal may see, as a condition (None: all of them)."""
    return access.work_condition(
        [Complaint.owner, Complaint.assignee, Complaint.received_by],
        Complaint.customer_id,
        lambda manager: select(KnownCustomer.customer_id).where(
            KnownCustomer.account_manager == manager
        ),
    )


class ComplaintRepository:
    async def get(
        self, session: AsyncSession, complaint_id: uuid.UUID, *, lock: bool = False
    ) -> Complaint | None:
        query = select(Complaint).where(Complaint.id == complaint_id)
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def search(
        self,
        session: AsyncSession,
        filters: ComplaintFilters,
        access: CustomerAccess,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Complaint]:
        query = select(Complaint)
        conditions: list[ColumnElement[bool]] = []
        scope = visible_to(access)
        if scope is not None:
            conditions.append(scope)
        for column, value in (
            (Complaint.status, filters.status),
            (Complaint.severity, filters.severity),
            (Complaint.owner, filters.owner),
            (Complaint.assignee, filters.assignee),
            (Complaint.customer_id, filters.customer_id),
            (Complaint.tier, filters.tier),
        ):
            if value is not None:
                conditions.append(column == value)
        if filters.breached is not None:
            either = or_(Complaint.respond_breached, Complaint.resolve_breached)
            conditions.append(either if filters.breached else ~either)
        if after is not None:
            when, ident = after
            conditions.append(
                or_(
                    Complaint.opened_at < when,
                    and_(Complaint.opened_at == when, Complaint.id < ident),
                )
            )
        query = (
            query.where(*conditions)
            .order_by(Complaint.opened_at.desc(), Complaint.id.desc())
            .limit(limit)
        )
        return (await session.execute(query)).scalars().all()

    async def history(self, session: AsyncSession, complaint_id: uuid.UUID) -> list[ComplaintEntry]:
        rows = await session.execute(
            select(ComplaintEntry)
            .where(ComplaintEntry.complaint_id == complaint_id)
            .order_by(ComplaintEntry.id)
        )
        return list(rows.scalars().all())

    @staticmethod
    def steps(history: Sequence[ComplaintEntry]) -> list[Step]:
        """The status history the SLA clock is computed from."""
        return [
            Step(entry.at, entry.to_status)
            for entry in history
            if entry.action in STATUS_ACTIONS and entry.to_status is not None
        ]

    async def due(self, session: AsyncSession, now: dt.datetime, limit: int) -> list[Complaint]:
        """Complaints whose clock changes state by `now`, locked; another replica skips
        them (SKIP LOCKED on PostgreSQL; SQLite has one writer)."""
        query = (
            select(Complaint)
            .where(Complaint.next_check_at <= now)
            .order_by(Complaint.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await session.execute(query)).scalars().all())

    async def next_check(self, session: AsyncSession) -> dt.datetime | None:
        value: dt.datetime | None = (
            await session.execute(select(func.min(Complaint.next_check_at)))
        ).scalar_one()
        return value

    async def check_all_open(self, session: AsyncSession, now: dt.datetime) -> int:
        """Have the timer recompute every open complaint's clock (after a policy change)."""
        result = await session.execute(
            update(Complaint).where(Complaint.closed_at.is_(None)).values(next_check_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def claim_level(
        self, session: AsyncSession, complaint: Complaint, level: int, values: dict[str, Any]
    ) -> bool:
        """Record that `complaint` reached escalation `level`; False when it already had
        (another replica, or a replay, got there first)."""
        return await insert_ignoring_duplicates(
            session, Escalation.__table__, {"complaint_id": complaint.id, "level": level, **values}
        )

    async def note_returns(
        self, session: AsyncSession, purchases: Sequence[tuple[uuid.UUID, dt.datetime]]
    ) -> None:
        """Purchases (customer, when) within 90 days after a closure mark that complaint's
        customer as having come back (the earliest such purchase is kept). One read of the
        few closed complaints the purchases could concern, one write of those that change."""
        if not purchases:
            return
        bought: dict[uuid.UUID, list[dt.datetime]] = {}
        for customer_id, at in purchases:
            bought.setdefault(customer_id, []).append(at)
        moments = [at for _, at in purchases]
        dialect = session.get_bind().dialect
        candidates = await session.execute(
            select(Complaint.id, Complaint.customer_id, Complaint.closed_at, Complaint.returned_at)
            .where(
                column_in(Complaint.customer_id, list(bought), dialect),
                Complaint.closed_at.is_not(None),
                Complaint.closed_at < max(moments),
                Complaint.closed_at >= min(moments) - RETURN_WINDOW,
            )
            .order_by(Complaint.id)
        )
        returned: list[dict[str, Any]] = []
        for complaint_id, customer_id, closed_at, returned_at in candidates:
            assert closed_at is not None  # (the query asks for closed complaints)
            within = [
                at for at in bought[customer_id] if closed_at < at <= closed_at + RETURN_WINDOW
            ]
            if within and (returned_at is None or returned_at > min(within)):
                returned.append({"id": complaint_id, "returned_at": min(within)})
        if not returned:
            return
        ids = [row["id"] for row in returned]
        await session.execute(update(Complaint), returned)
        expire_held(session, Complaint, ids)
        await session.execute(refresh_figures(dialect.name, Complaint.id.in_(ids)))

    async def erase_customer(self, session: AsyncSession, customer_id: uuid.UUID) -> None:
        """Drop what complaints say about a person; keep the figures."""
        ids = select(Complaint.id).where(Complaint.customer_id == customer_id)
        await session.execute(
            update(Complaint)
            .where(Complaint.customer_id == customer_id)
            .values(description=None, remedy=None, customer_told=None)
        )
        await session.execute(
            update(ComplaintEntry).where(ComplaintEntry.complaint_id.in_(ids)).values(note=None)
        )


class CustomerRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> KnownCustomer | None:
        return await session.get(KnownCustomer, customer_id)

    async def get_or_add(self, session: AsyncSession, customer_id: uuid.UUID) -> KnownCustomer:
        await insert_ignoring_duplicates(
            session, KnownCustomer.__table__, {"customer_id": customer_id}
        )
        customer = await session.get(KnownCustomer, customer_id, with_for_update=True)
        assert customer is not None
        return customer

    async def get_or_add_many(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, KnownCustomer]:
        return await get_or_add_locked(session, KnownCustomer, customer_ids)


class PolicyRepository:
    async def current(self, session: AsyncSession) -> SlaPolicy | None:
        query = select(SlaPolicy).order_by(SlaPolicy.version.desc()).limit(1)
        return (await session.execute(query)).scalar_one_or_none()

    async def add(self, session: AsyncSession, policy: SlaPolicy) -> None:
        session.add(policy)
        await session.flush()


complaints = ComplaintRepository()
customers = CustomerRepository()
policies = PolicyRepository()
