"""Complaint rules: open, move through the workflow, hand over, assign; keep the SLA clock
from the history; escalate on a breach; announce each step. Never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session

from services.complaints import repository as repo
from services.complaints import sla
from services.complaints.histogram import DURATION_COLUMNS, bucket_of
from services.complaints.models import Complaint, ComplaintEntry, KnownCustomer, SlaPolicy
from services.complaints.repository import ComplaintFilters
from services.complaints.schemas import (
    DEFAULT_POLICY,
    Assignment,
    ComplaintCreate,
    HandOver,
    SlaPolicyDocument,
    TransitionCreate,
)
from services.complaints.workflow import WAITING, allowed_moves
from shared.access import CustomerAccess
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from shared.events import (
    ComplaintClosed,
    ComplaintEscalated,
    ComplaintOpened,
    ComplaintTransitioned,
    EventEnvelope,
)
from shared.outbox import record_event
from shared.revisions import stamp_of, take

PRODUCER = "complaints"
SYSTEM = "system"  # the actor of what the SLA timer does


@dataclass(frozen=True)
class Policy:
    version: int
    document: SlaPolicyDocument


class ComplaintsService:
    # ------------------------------------------------------------ policy
    async def policy(self, session: AsyncSession) -> Policy:
        """The SLA policy in force (the default until someone writes one)."""
        row = await repo.policies.current(session)
        if row is None:
            return Policy(0, DEFAULT_POLICY)
        return Policy(row.version, SlaPolicyDocument.model_validate(row.document))

    async def policy_row(self, session: AsyncSession) -> SlaPolicy:
        row = await repo.policies.current(session)
        if row is None:
            row = SlaPolicy(
                version=0,
                document=DEFAULT_POLICY.model_dump(mode="json"),
                created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                created_by=SYSTEM,
            )
        return row

    async def replace_policy(
        self, session: AsyncSession, document: SlaPolicyDocument, actor: str
    ) -> SlaPolicy:
        """A new version of the policy; every open complaint's clock is recomputed from its
        history under it within seconds (by the timer), so no deadline stays stale."""
        current = await repo.policies.current(session)
        now = utcnow()
        row = SlaPolicy(
            version=(current.version if current else 0) + 1,
            document=document.model_dump(mode="json"),
            created_at=now,
            created_by=actor,
        )
        await repo.policies.add(session, row)
        await repo.complaints.check_all_open(session, now)
        return row

    # ------------------------------------------------------------ complaints
    async def open(
        self, session: AsyncSession, body: ComplaintCreate, access: CustomerAccess
    ) -> Complaint:
        """Record a complaint; its receiver owns it (first-contact responsibility)."""
        receiver = access.principal.user
        if body.received_by is not None and body.received_by != receiver:
            if not access.is_admin:
                raise Forbidden("Only an admin may record a complaint received by someone else.")
            receiver = body.received_by
        customer = await repo.customers.get(session, body.customer_id)
        self._check_customer(customer, body.customer_id, access)
        now = utcnow()
        complaint = Complaint(
            id=uuid.uuid4(),
            customer_id=body.customer_id,
            channel=body.channel,
            category=body.category,
            description=body.description,
            severity=body.severity,
            tier=customer.tier if customer else None,
            status="received",
            owner=receiver,
            received_by=receiver,
            assignee=receiver,
            opened_at=now,
            updated_at=now,
            alerts_done=[],
        )
        session.add(complaint)
        entry = self._entry(complaint, now, receiver, "opened", to_status="received")
        policy = await self.policy(session)
        clock = self._refresh_clock(complaint, [entry], policy, now)
        await session.flush()
        await record_event(
            session,
            producer=PRODUCER,
            event_type="complaint.opened",
            customer_id=complaint.customer_id,
            data=ComplaintOpened(
                complaint_id=complaint.id,
                severity=complaint.severity,
                category=complaint.category,
                owner=complaint.owner,
                respond_by=clock.respond_due_at or now,
                resolve_by=clock.current.due_at or now,
                channel=complaint.channel,
                tier=complaint.tier,
            ),
            occurred_at=now,
        )
        return complaint

    async def get(
        self, session: AsyncSession, complaint_id: uuid.UUID, access: CustomerAccess
    ) -> tuple[Complaint, list[ComplaintEntry], sla.Clock]:
        """A complaint the caller may see, its history and its SLA clock now."""
        complaint = await self._visible(session, complaint_id, access)
        history = await repo.complaints.history(session, complaint_id)
        policy = await self.policy(session)
        clock = self._clock(complaint, repo.complaints.steps(history), policy, utcnow())
        return complaint, history, clock

    async def transition(
        self,
        session: AsyncSession,
        complaint_id: uuid.UUID,
        body: TransitionCreate,
        access: CustomerAccess,
    ) -> tuple[Complaint, list[ComplaintEntry], sla.Clock]:
        """Move the complaint to `body.to` (409 naming the allowed moves otherwise); the
        complaint, its history and its clock as they now are."""
        complaint = await self._visible(session, complaint_id, access, lock=True)
        moves = allowed_moves(complaint.status, complaint.paused_from)
        if body.to not in moves:
            raise Conflict(
                f"A complaint that is {complaint.status} cannot move to {body.to}; "
                f"allowed: {', '.join(moves)}.",
                errors=[
                    {
                        "field": "to",
                        "message": f"allowed: {', '.join(moves)}",
                        "type": "transition",
                        "allowed": list(moves),
                    }
                ],
            )
        self._check_step_fields(body)
        actor = access.principal.user
        now = utcnow()
        history = await repo.complaints.history(session, complaint.id)
        details = self._apply_step(complaint, body)
        history.append(
            await self._move(session, complaint, body.to, actor, now, body.note, details)
        )
        policy = await self.policy(session)
        if body.to == "confirmed":
            assert body.satisfaction is not None
            complaint.satisfaction = body.satisfaction
            if body.satisfaction < policy.document.reopen_below:
                note = (
                    f"satisfaction {body.satisfaction} is below {policy.document.reopen_below}: "
                    "reopened"
                )
                history.append(await self._move(session, complaint, "reopened", actor, now, note))
        clock = self._refresh_clock(complaint, history, policy, now)
        if complaint.status == "confirmed":
            await self._close(session, complaint, clock, now)
        await session.flush()
        return complaint, history, clock

    async def hand_over(
        self, session: AsyncSession, complaint_id: uuid.UUID, body: HandOver, access: CustomerAccess
    ) -> Complaint:
        """Move first-contact ownership, with its reason; only the owner or an admin may."""
        complaint = await self._visible(session, complaint_id, access, lock=True)
        actor = access.principal.user
        if not access.is_admin and actor != complaint.owner:
            raise Forbidden(f"Only the owner ({complaint.owner}) or an admin hands it over.")
        if body.to == complaint.owner:
            raise Conflict(f"{body.to} already owns this complaint.")
        now = utcnow()
        self._entry(
            complaint,
            now,
            actor,
            "hand_over",
            note=body.reason,
            details={"from": complaint.owner, "to": body.to},
        )
        complaint.owner = body.to
        self._touch(complaint, now)
        await session.flush()
        return complaint

    async def assign(
        self,
        session: AsyncSession,
        complaint_id: uuid.UUID,
        body: Assignment,
        access: CustomerAccess,
    ) -> Complaint:
        """Give the work to someone (the owner stays accountable)."""
        complaint = await self._visible(session, complaint_id, access, lock=True)
        now = utcnow()
        self._entry(
            complaint,
            now,
            access.principal.user,
            "assignment",
            note=body.note,
            details={"from": complaint.assignee, "to": body.assignee},
        )
        complaint.assignee = body.assignee
        self._touch(complaint, now)
        await session.flush()
        return complaint

    async def search(
        self,
        session: AsyncSession,
        filters: ComplaintFilters,
        access: CustomerAccess,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Complaint]:
        return list(
            await repo.complaints.search(session, filters, access, after=after, limit=limit)
        )

    # ------------------------------------------------------------ the SLA timer
    async def fire_due(self, session: AsyncSession, now: dt.datetime, limit: int) -> int:
        """Act on every clock that changed state by `now` (warnings, breaches and their
        escalations) and set each complaint's next timer; the number of complaints seen."""
        due = await repo.complaints.due(session, now, limit)
        if not due:
            return 0
        policy = await self.policy(session)
        for complaint in due:
            history = await repo.complaints.history(session, complaint.id)
            clock = self._refresh_clock(complaint, history, policy, now)
            for key, moment in self._alerts(clock):
                if key in complaint.alerts_done or moment > now:
                    continue
                complaint.alerts_done = [*complaint.alerts_done, key]
                if key.endswith(":warning"):
                    self._entry(complaint, now, SYSTEM, "sla_warning", details={"alert": key})
                else:
                    await self._escalate(session, complaint, key, policy, now)
            complaint.next_check_at = self._next_check(clock, complaint.alerts_done)
        await session.flush()
        return len(due)

    async def _escalate(
        self,
        session: AsyncSession,
        complaint: Complaint,
        alert: str,
        policy: Policy,
        now: dt.datetime,
    ) -> None:
        """One level up the ladder: the level's person takes the complaint over for action
        (the owner stays), and `complaint.escalated` goes out, once per level."""
        breached = alert.split(":", 1)[0]
        level = complaint.escalation_level + 1
        ladder = policy.document.escalation
        if level > len(ladder):
            self._entry(complaint, now, SYSTEM, "sla_breach", details={"alert": alert})
            return
        rung = ladder[level - 1]
        claimed = await repo.complaints.claim_level(
            session,
            complaint,
            level,
            {"breached": breached, "assigned_to": rung.assign_to, "at": now},
        )
        if not claimed:
            return
        self._entry(
            complaint,
            now,
            SYSTEM,
            "escalation",
            note=f"{breached} time breached: escalated to {rung.name}",
            details={
                "level": level,
                "alert": alert,
                "from": complaint.assignee,
                "to": rung.assign_to,
            },
        )
        complaint.escalation_level = level
        complaint.assignee = rung.assign_to
        self._touch(complaint, now)
        await record_event(
            session,
            producer=PRODUCER,
            event_type="complaint.escalated",
            customer_id=complaint.customer_id,
            data=ComplaintEscalated(
                complaint_id=complaint.id,
                level=level,
                breached=breached,
                level_name=rung.name,
                assignee=rung.assign_to,
                owner=complaint.owner,
            ),
            occurred_at=now,
        )

    # ------------------------------------------------------------ from events
    async def note_customers(
        self, session: AsyncSession, changes: Sequence[tuple[EventEnvelope, Mapping[str, Any]]]
    ) -> None:
        """Take the fields complaints needs from a poll of customer events (each with its
        data's fields), in order, unless a newer event already set them (events of
        different topics arrive in any order): each customer's row read once, one flush."""
        customers = await repo.customers.get_or_add_many(
            session, list(dict.fromkeys(event.customer_id for event, _ in changes))
        )
        for event, data in changes:
            customer = customers[event.customer_id]
            stamp = stamp_of(event)
            stamps = dict(customer.field_stamps or {})
            for field in ("account_manager", "timezone"):
                if field in data and take(stamps, field, stamp, getattr(customer, f"{field}_at")):
                    setattr(customer, field, data[field])
                    setattr(customer, f"{field}_at", stamp.at)
            customer.field_stamps = stamps
        await session.flush()

    async def note_tiers(
        self, session: AsyncSession, changes: Sequence[tuple[uuid.UUID, str, dt.datetime]]
    ) -> None:
        """Tiers from a poll of `tier.changed` (customer, tier, when), in order: a tier
        older than the one a customer has changes nothing."""
        customers = await repo.customers.get_or_add_many(
            session, list(dict.fromkeys(customer_id for customer_id, _, _ in changes))
        )
        for customer_id, tier, at in changes:
            customer = customers[customer_id]
            if customer.tier_at is None or customer.tier_at <= at:
                customer.tier, customer.tier_at = tier, at
        await session.flush()

    async def erase_customer(
        self, session: AsyncSession, customer_id: uuid.UUID, at: dt.datetime
    ) -> None:
        customer = await repo.customers.get_or_add(session, customer_id)
        customer.erased_at = customer.erased_at or at
        customer.timezone = None
        await repo.complaints.erase_customer(session, customer_id)
        await session.flush()

    async def note_purchases(
        self, session: AsyncSession, purchases: Sequence[tuple[uuid.UUID, dt.datetime]]
    ) -> None:
        """Purchases (customer, when) from a poll: a customer buying again within 90 days
        of a complaint's closure has come back."""
        await repo.complaints.note_returns(session, purchases)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _check_customer(
        customer: KnownCustomer | None, customer_id: uuid.UUID, access: CustomerAccess
    ) -> None:
        if customer is not None and customer.erased_at is not None:
            raise Gone(f"Customer {customer_id} was erased.")
        manager = customer.account_manager if customer else None
        if not access.may_see_customer(manager):
            raise NotFound(f"No customer {customer_id}.")

    async def _visible(
        self,
        session: AsyncSession,
        complaint_id: uuid.UUID,
        access: CustomerAccess,
        *,
        lock: bool = False,
    ) -> Complaint:
        complaint = await repo.complaints.get(session, complaint_id, lock=lock)
        if complaint is None:
            raise NotFound(f"No complaint {complaint_id}.")
        manager = None
        if access.manager_scope is not None:
            customer = await repo.customers.get(session, complaint.customer_id)
            manager = customer.account_manager if customer else None
        people = (complaint.owner, complaint.assignee, complaint.received_by)
        if not access.may_see_work(people, manager):
            raise NotFound(f"No complaint {complaint_id}.")
        return complaint

    @staticmethod
    def _check_step_fields(body: TransitionCreate) -> None:
        """What each step records: a field given to a step it does not belong to is refused,
        so nothing is silently dropped."""
        belongs = {
            "severity": "judged",
            "category": "judged",
            "remedy": "decided",
            "remedy_by": "decided",
            "satisfaction": "confirmed",
        }
        stray = [
            field
            for field, step in belongs.items()
            if getattr(body, field) is not None and body.to != step
        ]
        if stray:
            raise InvalidInput(
                f"Not recorded when moving to {body.to}: {', '.join(stray)}.",
                errors=[
                    {"field": field, "message": f"only with to={belongs[field]}", "type": "step"}
                    for field in stray
                ],
            )
        if body.to == "confirmed" and body.satisfaction is None:
            raise InvalidInput(
                "Confirming records the customer's satisfaction (1-5).",
                errors=[{"field": "satisfaction", "message": "required", "type": "missing"}],
            )
        if body.to == "decided" and body.remedy is None:
            raise InvalidInput(
                "Deciding records the remedy.",
                errors=[{"field": "remedy", "message": "required", "type": "missing"}],
            )
        if body.to == "communicated" and body.note is None:
            raise InvalidInput(
                "Communicating records what the customer was told (note).",
                errors=[{"field": "note", "message": "required", "type": "missing"}],
            )

    @staticmethod
    def _apply_step(complaint: Complaint, body: TransitionCreate) -> dict[str, Any]:
        """Set what the step records; the same values go into its history entry."""
        details: dict[str, Any] = {}
        if body.to == "judged":
            if body.severity is not None:
                details["severity"] = [complaint.severity, body.severity]
                complaint.severity = body.severity
            if body.category is not None:
                details["category"] = [complaint.category, body.category]
                complaint.category = body.category
        elif body.to == "decided":
            complaint.remedy = body.remedy
            complaint.remedy_by = body.remedy_by or complaint.assignee
            details.update(remedy=complaint.remedy, remedy_by=complaint.remedy_by)
        elif body.to == "communicated":
            complaint.customer_told = body.note
        elif body.to == "confirmed":
            details["satisfaction"] = body.satisfaction
        return details

    async def _move(
        self,
        session: AsyncSession,
        complaint: Complaint,
        to: str,
        actor: str,
        now: dt.datetime,
        note: str | None,
        details: dict[str, Any] | None = None,
    ) -> ComplaintEntry:
        """Change the status, record it, announce it."""
        before = complaint.status
        if to == WAITING:
            complaint.paused_from = before
        elif before == WAITING:
            complaint.paused_from = None
        if to == "reopened":
            complaint.reopen_count += 1
            complaint.closed_at = None
        complaint.status = to
        self._touch(complaint, now)
        entry = self._entry(
            complaint,
            now,
            actor,
            "transition",
            from_status=before,
            to_status=to,
            note=note,
            details=details or {},
        )
        await record_event(
            session,
            producer=PRODUCER,
            event_type="complaint.transitioned",
            customer_id=complaint.customer_id,
            data=ComplaintTransitioned(
                complaint_id=complaint.id, from_status=before, to_status=to, actor=actor, note=note
            ),
            occurred_at=now,
        )
        return entry

    async def _close(
        self, session: AsyncSession, complaint: Complaint, clock: sla.Clock, now: dt.datetime
    ) -> None:
        """The customer confirmed: keep the figures statistics need and announce it."""
        complaint.closed_at = now
        complaint.respond_business_s = clock.respond_business_time.total_seconds()
        complaint.respond_wall_s = (
            (clock.responded_at or now) - complaint.opened_at
        ).total_seconds()
        complaint.resolve_business_s = sum(
            cycle.business_time.total_seconds() for cycle in clock.cycles
        )
        complaint.resolve_wall_s = sum(cycle.wall_time.total_seconds() for cycle in clock.cycles)
        complaint.met_sla = not any(cycle.breached for cycle in clock.cycles) and not (
            clock.respond_breached
        )
        for name in DURATION_COLUMNS:
            setattr(complaint, f"{name[:-2]}_bucket", bucket_of(getattr(complaint, name)))
        complaint.returned_at = None
        await record_event(
            session,
            producer=PRODUCER,
            event_type="complaint.closed",
            customer_id=complaint.customer_id,
            data=ComplaintClosed(
                complaint_id=complaint.id,
                resolution_hours=round(complaint.resolve_wall_s / 3600, 3),
                satisfaction=complaint.satisfaction,
                business_hours=round(complaint.resolve_business_s / 3600, 3),
                met_sla=complaint.met_sla,
                severity=complaint.severity,
            ),
            occurred_at=now,
        )

    def _clock(
        self, complaint: Complaint, steps: list[sla.Step], policy: Policy, now: dt.datetime
    ) -> sla.Clock:
        targets = policy.document.targets_for(complaint.severity, complaint.tier)
        return sla.clock(steps, targets, policy.document.calendar(), now)

    def _refresh_clock(
        self,
        complaint: Complaint,
        history: list[ComplaintEntry],
        policy: Policy,
        now: dt.datetime,
    ) -> sla.Clock:
        """Recompute the clock from the history and keep what lists and timers need."""
        clock = self._clock(complaint, repo.complaints.steps(history), policy, now)
        complaint.respond_by = clock.respond_due_at
        complaint.responded_at = clock.responded_at
        complaint.resolve_by = clock.current.due_at if clock.current.ended_at is None else None
        complaint.respond_breached = clock.respond_breached and clock.responded_at is None
        complaint.resolve_breached = clock.current.breached and clock.current.ended_at is None
        complaint.next_check_at = self._next_check(clock, complaint.alerts_done or [])
        return clock

    @staticmethod
    def _alerts(clock: sla.Clock) -> list[tuple[str, dt.datetime]]:
        """The timer alerts of the clock's open parts: warnings and breaches."""
        found: list[tuple[str, dt.datetime]] = []
        if clock.responded_at is None:
            if clock.respond_warn_at is not None:
                found.append(("respond:warning", clock.respond_warn_at))
            if clock.respond_due_at is not None:
                found.append(("respond:breach", clock.respond_due_at))
        cycle = clock.current
        if cycle.ended_at is None:
            number = len(clock.cycles)
            if cycle.warn_at is not None:
                found.append((f"resolve:{number}:warning", cycle.warn_at))
            if cycle.due_at is not None:
                found.append((f"resolve:{number}:breach", cycle.due_at))
        return found

    def _next_check(self, clock: sla.Clock, done: list[str]) -> dt.datetime | None:
        pending = [moment for key, moment in self._alerts(clock) if key not in done]
        return min(pending, default=None)

    @staticmethod
    def _touch(complaint: Complaint, now: dt.datetime) -> None:
        complaint.updated_at = now
        complaint.version += 1

    @staticmethod
    def _entry(
        complaint: Complaint,
        at: dt.datetime,
        actor: str,
        action: str,
        *,
        from_status: str | None = None,
        to_status: str | None = None,
        note: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> ComplaintEntry:
        entry = ComplaintEntry(
            complaint_id=complaint.id,
            at=at,
            actor=actor,
            action=action,
            from_status=from_status,
            to_status=to_status,
            note=note,
            details=details or {},
        )
        session = object_session(complaint)
        assert session is not None
        session.add(entry)
        return entry


complaints_service = ComplaintsService()
