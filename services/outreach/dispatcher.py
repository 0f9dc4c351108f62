"""The durable scheduler: due tasks live in the database; each pass takes a batch (locked,
so another replica skips it), checks the guardrails at send time, hands manual contacts
to their assignee and delivers automated ones through the provider.

A delivery is claimed with a lease before the provider is called and recorded after: a
replica that stops in between leaves the lease to run out, and the next pass sends again
with the same idempotency key, so the provider sends once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.outreach import repository as repo
from services.outreach.channels import DeliveryResult, HttpProvider
from services.outreach.models import Recipient, Task
from services.outreach.occasions import local_moment
from services.outreach.planner import DEFAULT_ZONE
from services.outreach.schemas import AUTOMATED, CONSENT_OF, PlanDocument, QuietHours
from services.outreach.service import outreach_service

DISPATCH_GUARD = "dispatch"
# Contacts that never move for another one on the same day.
URGENT = frozenset({"complaint_follow_up", "hand_over"})
Contact = tuple[uuid.UUID, str, bool, dt.datetime, str]  # task, channel, marketing, when, kind


@dataclass(frozen=True)
class Verdict:
    """What the guardrails say of a due task now."""

    action: str  # cancel | skip | hold | defer | go
    reason: str
    until: dt.datetime | None = None


def quiet_until(now: dt.datetime, zone: str, quiet: QuietHours) -> dt.datetime | None:
    """The end of the quiet hours `now` falls in (customer's local time), or None."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    start, end = quiet.start, quiet.end
    if start == end:
        return None
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + dt.timedelta(days=1)
    return local_moment(day, end, zone)


def judge(
    task: Task,
    recipient: Recipient | None,
    plan: PlanDocument,
    open_complaint: bool,
    contacts: Sequence[Contact],
    now: dt.datetime,
) -> Verdict:
    """The guardrails, in order: erased, consent, open complaint, quiet hours, budget, one
    contact a day. Service contacts and complaint follow-ups are exempt from the marketing
    rules; nothing is dropped for timing: it is held or deferred."""
    if recipient is None or recipient.erased_at is not None:
        return Verdict("cancel", "the customer is unknown or erased")
    contacts = [contact for contact in contacts if contact[0] != task.id]
    zone = recipient.timezone or DEFAULT_ZONE
    consent_channel = CONSENT_OF.get(task.channel)
    if task.marketing and consent_channel is not None:
        state = (recipient.consent or {}).get(consent_channel)
        if state != "granted":
            return Verdict(
                "skip", f"no consent for {consent_channel} marketing ({state or 'never given'})"
            )
    if task.marketing and open_complaint:
        return Verdict("hold", "a complaint of the customer is open: no marketing until it closes")
    if task.channel in AUTOMATED:
        until = quiet_until(now, zone, plan.quiet_hours)
        if until is not None:
            return Verdict("defer", "quiet hours in the customer's time zone", until)
    if task.marketing:
        for budget in plan.budget:
            if budget.channel != task.channel:
                continue
            since = now - dt.timedelta(days=budget.window_days)
            used = sorted(
                at
                for _, channel, marketing, at, _ in contacts
                if channel == task.channel and marketing and at > since
            )
            if len(used) >= budget.max:
                frees = (used[-budget.max] if budget.max else now) + dt.timedelta(
                    days=budget.window_days
                )
                return Verdict(
                    "defer",
                    f"budget: {budget.max} {task.channel} contacts per "
                    f"{budget.window_days} days used",
                    max(frees, now + dt.timedelta(minutes=1)),
                )
    if task.kind not in URGENT:
        today = now.astimezone(ZoneInfo(zone)).date()
        earlier = [
            kind for _, _, _, at, kind in contacts if at.astimezone(ZoneInfo(zone)).date() == today
        ]
        if earlier:
            tomorrow = local_moment(today + dt.timedelta(days=1), plan.send_at, zone)
            return Verdict("defer", f"one contact a day: {earlier[0]} went first", tomorrow)
    return Verdict("go", "guardrails passed")


def address_of(task: Task, recipient: Recipient) -> str | None:
    """Where an automated contact goes: the contact the occasion is about, else the
    decision maker, else any contact with an address for the channel."""
    field = "phone" if task.channel == "sms" else "email"
    contacts = list(recipient.contacts or [])
    about = task.occasion.split(":")[1] if task.occasion.count(":") >= 2 else None
    ordered = sorted(
        contacts,
        key=lambda c: (str(c.get("id")) != about, not c.get("decision_maker", False)),
    )
    return next((str(c[field]) for c in ordered if c.get(field)), None)


@dataclass
class Dispatcher:
    """One replica's dispatching: guardrails, claims, deliveries, records."""

    sessions: async_sessionmaker[AsyncSession]
    provider: HttpProvider | None
    batch_size: int = 200
    lease: dt.timedelta = dt.timedelta(seconds=30)
    max_attempts: int = 5
    retry_backoff: dt.timedelta = dt.timedelta(seconds=2)
    concurrency: int = 64

    async def run_once(self, now: dt.datetime) -> tuple[int, bool]:
        """One pass; the number of due tasks seen, and whether events were recorded."""
        async with self.sessions() as session:
            async with session.begin():
                await repo.guard_writes(session, DISPATCH_GUARD, now)
                due = await repo.tasks.due(session, now, self.batch_size)
                claimed = await self._decide(session, due, now) if due else []
            pending = bool(session.info.get("outbox_pending"))
        if claimed:
            results = await self._deliver(claimed)
            async with self.sessions() as session:
                async with session.begin():
                    await repo.guard_writes(session, DISPATCH_GUARD, now)
                    await self._record(session, results, now)
                pending = pending or bool(session.info.get("outbox_pending"))
        return len(due), pending

    async def _decide(
        self, session: AsyncSession, due: list[Task], now: dt.datetime
    ) -> list[tuple[uuid.UUID, dict[str, Any]]]:
        customers = list({task.customer_id for task in due})
        recipients = await repo.recipients.many(session, customers)
        complaining = await repo.complaints.customers_with_open(session, customers)
        contacts: dict[uuid.UUID, list[Contact]] = defaultdict(list)
        contacts.update(
            await repo.tasks.sent_since(session, customers, now - dt.timedelta(days=366))
        )
        plans: dict[str | None, PlanDocument] = {}
        claimed: list[tuple[uuid.UUID, dict[str, Any]]] = []
        for task in sorted(due, key=lambda t: (t.customer_id, t.priority, t.due_at)):
            recipient = recipients.get(task.customer_id)
            tier = recipient.tier if recipient else None
            if tier not in plans:
                plans[tier] = await outreach_service.plan_document(session, tier)
            verdict = judge(
                task,
                recipient,
                plans[tier],
                task.customer_id in complaining,
                contacts[task.customer_id],
                now,
            )
            outreach_service.decide(task, now, verdict.action, verdict.reason)
            task.lease_until = None
            if verdict.action == "cancel":
                task.status = "cancelled"
            elif verdict.action == "skip":
                task.status, task.outcome, task.completed_at = "skipped", "skipped", now
                await outreach_service.announce(session, task, "skipped", verdict.reason)
            elif verdict.action == "hold":
                task.status = "held"
            elif verdict.action == "defer":
                assert verdict.until is not None
                task.status, task.due_at = "deferred", verdict.until
            elif task.channel not in AUTOMATED:
                task.status, task.contacted_at = "ready", now  # on the assignee's worklist
                contacts[task.customer_id].append(
                    (task.id, task.channel, task.marketing, now, task.kind)
                )
            else:
                assert recipient is not None
                address = address_of(task, recipient)
                if address is None or self.provider is None:
                    reason = (
                        f"no {task.channel} address for the customer"
                        if address is None
                        else "no delivery provider is configured (CRM_OUTREACH_PROVIDER_URL)"
                    )
                    outreach_service.decide(task, now, "failed", reason)
                    task.status, task.outcome, task.completed_at = "failed", "failed", now
                    await outreach_service.announce(session, task, "failed", reason)
                    continue
                task.status, task.lease_until = "sending", now + self.lease
                task.attempts += 1
                task.contacted_at = now
                contacts[task.customer_id].append(
                    (task.id, task.channel, task.marketing, now, task.kind)
                )
                claimed.append(
                    (
                        task.id,
                        {
                            "task_id": str(task.id),
                            "customer_id": str(task.customer_id),
                            "channel": task.channel,
                            "to": address,
                            "kind": task.kind,
                            "occasion": task.occasion,
                            "name": recipient.name,
                            "basis": task.basis,
                        },
                    )
                )
        await session.flush()
        return claimed

    async def _deliver(
        self, claimed: list[tuple[uuid.UUID, dict[str, Any]]]
    ) -> list[tuple[uuid.UUID, DeliveryResult]]:
        assert self.provider is not None
        provider = self.provider
        gate = asyncio.Semaphore(self.concurrency)

        async def one(
            task_id: uuid.UUID, message: dict[str, Any]
        ) -> list[tuple[uuid.UUID, DeliveryResult]]:
            async with gate:
                return [(task_id, await provider.deliver(str(task_id), message))]

        async def many(
            batch: list[tuple[uuid.UUID, dict[str, Any]]],
        ) -> list[tuple[uuid.UUID, DeliveryResult]]:
            async with gate:
                results = await provider.deliver_batch([(str(t), m) for t, m in batch])
                return list(zip([t for t, _ in batch], results, strict=True))

        size = provider.batch_size
        if size > 1:
            sent = [many(claimed[at : at + size]) for at in range(0, len(claimed), size)]
        else:
            sent = [one(task_id, message) for task_id, message in claimed]
        return [result for results in await asyncio.gather(*sent) for result in results]

    async def _record(
        self,
        session: AsyncSession,
        results: list[tuple[uuid.UUID, DeliveryResult]],
        claimed_at: dt.datetime,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        claimed = await repo.tasks.many(session, [task_id for task_id, _ in results], lock=True)
        for task_id, result in results:
            task = claimed.get(task_id)
            # Someone else recorded it (its lease ran out and another replica sent it).
            if task is None or task.status != "sending" or task.contacted_at != claimed_at:
                continue
            task.provider_response = {"status": result.status_code, **result.detail}
            task.lease_until = None
            if result.outcome == "sent":
                task.status, task.outcome, task.completed_at = "sent", "sent", now
                outreach_service.decide(
                    task, now, "sent", f"provider answered {result.status_code}"
                )
                await outreach_service.announce(session, task, "sent", None)
            elif result.outcome == "retry" and task.attempts < self.max_attempts:
                retry_at = now + self.retry_backoff * 2 ** (task.attempts - 1)
                task.status, task.due_at, task.contacted_at = "deferred", retry_at, None
                outreach_service.decide(
                    task,
                    now,
                    "retry",
                    f"provider: {result.status_code or 'no answer'} {result.detail}"[:300]
                    + f"; again at {retry_at.isoformat()}",
                )
            else:
                reason = f"provider refused: {result.status_code} {result.detail}"[:500]
                task.status, task.outcome, task.completed_at = "failed", "failed", now
                task.contacted_at = None
                outreach_service.decide(task, now, "failed", reason)
                await outreach_service.announce(session, task, "failed", reason)
        await session.flush()
