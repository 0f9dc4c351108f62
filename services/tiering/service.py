"""Tiering rules: aggregates from events, policies, re-rank, explanations. Never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.models import (
    SCORE_FIELDS,
    Complaint,
    CustomerAggregate,
    CustomerScore,
    TierPolicy,
    Touch,
    epoch_day,
)
from services.tiering.ranking import (
    Ranking,
    Reassessment,
    explain,
    in_units,
    method_scores,
    rank,
    reassess,
    rule_reasons,
    scores,
    summary_figures,
)
from services.tiering.schemas import (
    DEFAULT_POLICY,
    Aggregates,
    Mover,
    PolicyCreate,
    PolicyDocument,
    RankingOutcome,
    SummaryTier,
    TierFigures,
    TierHistoryEntry,
    TierSummary,
    TierView,
)
from shared.db import new_uuids, utcnow
from shared.errors import Conflict, NotFound
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    PaymentRecorded,
    PurchaseRecorded,
)
from shared.outbox import outbox_row, record_events

PRODUCER = "tiering"
RERANK_LOCK_ID = 0x7131_2A4B
SAMPLE_MOVERS = 20
CHANGES_PER_WRITE = 50_000  # a re-rank writes tier changes in chunks: memory stays flat


@dataclass
class TierChange:
    """A customer's new tier, with the figures and reasons that go into its history row
    and its `tier.changed` event."""

    customer_id: uuid.UUID
    previous: str | None
    tier: str
    figures: dict[str, Any]
    reasons: list[str]


def tier_changed_json(
    previous: str | None,
    tier: str,
    policy: TierPolicy,
    figures: dict[str, Any],
    reasons: list[str],
    changed_at: dt.datetime,
) -> dict[str, Any]:
    """`tier.changed` data as TierChanged(...).model_dump(mode="json") gives it once written
    by `event_json`, without building the model (scores and reasons are JSON values)."""
    return {
        "previous_tier": previous,
        "tier": tier,
        "policy_id": policy.id,
        "policy_version": policy.version,
        "scores": figures,
        "reasons": reasons,
        "changed_at": changed_at,
    }


class TieringService:
    """Aggregates per customer, ranking policies and the tiers they give."""

    # ------------------------------------------------------------ events
    async def register_customer(
        self, session: AsyncSession, customer_id: uuid.UUID, at: dt.datetime
    ) -> None:
        """Note that the customer exists (`customer.created`)."""
        aggregate = await repo.aggregates.get_or_create(session, customer_id, at)
        aggregate.known = True
        aggregate.updated_at = utcnow()
        await session.flush()

    async def note_relationship(
        self, session: AsyncSession, customer_id: uuid.UUID, level: str, at: dt.datetime
    ) -> None:
        """Keep the relationship level (vendor, partner, strategic alliance) for the thermometer."""
        aggregate = await repo.aggregates.get_or_create(session, customer_id, at)
        aggregate.relationship_level = level
        await session.flush()

    async def record_touch(
        self,
        session: AsyncSession,
        event_id: uuid.UUID,
        customer_id: uuid.UUID,
        kind: str,
        at: dt.datetime,
        satisfaction: int | None,
    ) -> None:
        """A contact with the customer: an interaction, or outreach that reached them."""
        await repo.aggregates.get_or_create(session, customer_id, at)
        await repo.touches.add(
            session,
            Touch(
                id=event_id,
                customer_id=customer_id,
                kind=kind,
                day=epoch_day(at),
                satisfaction=satisfaction,
            ),
        )

    async def complaint_opened(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: ComplaintOpened,
        at: dt.datetime,
    ) -> None:
        await repo.aggregates.get_or_create(session, customer_id, at)
        await repo.complaints.open(
            session,
            Complaint(
                complaint_id=data.complaint_id,
                customer_id=customer_id,
                severity=data.severity,
                opened_at=at,
            ),
        )

    async def complaint_closed(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: ComplaintClosed,
        at: dt.datetime,
    ) -> None:
        await repo.complaints.close(session, data.complaint_id, customer_id, at, data.satisfaction)

    async def mark_erased(self, session: AsyncSession, customer_id: uuid.UUID) -> None:
        """Erasure keeps every number: tiering holds no personal data, only figures."""
        aggregate = await repo.aggregates.get(session, customer_id)
        if aggregate is not None:
            aggregate.erased = True
            await session.flush()

    async def apply_purchase(
        self, session: AsyncSession, customer_id: uuid.UUID, purchase: PurchaseRecorded
    ) -> None:
        """Fold one purchase into the customer's lifetime and daily aggregates."""
        when = purchase.purchased_at
        aggregate = await repo.aggregates.get_or_create(session, customer_id, when)
        aggregate.revenue = (aggregate.revenue or Decimal(0)) + purchase.amount
        aggregate.quantity = (aggregate.quantity or Decimal(0)) + purchase.quantity
        aggregate.purchase_count = (aggregate.purchase_count or 0) + 1
        if aggregate.first_purchase_at is None or when < aggregate.first_purchase_at:
            aggregate.first_purchase_at = when
        if aggregate.last_purchase_at is None or when > aggregate.last_purchase_at:
            aggregate.last_purchase_at = when
        aggregate.updated_at = utcnow()
        day = await repo.aggregates.day(session, aggregate.key, epoch_day(when))
        day.revenue = (day.revenue or Decimal(0)) + purchase.amount
        day.quantity = (day.quantity or Decimal(0)) + purchase.quantity
        day.purchases = (day.purchases or 0) + 1
        await session.flush()

    async def apply_payment(
        self, session: AsyncSession, customer_id: uuid.UUID, payment: PaymentRecorded
    ) -> None:
        """Fold money collected into the customer's aggregates (for collection ratios)."""
        when = payment.received_at
        aggregate = await repo.aggregates.get_or_create(session, customer_id, when)
        aggregate.collected = (aggregate.collected or Decimal(0)) + payment.amount
        aggregate.updated_at = utcnow()
        day = await repo.aggregates.day(session, aggregate.key, epoch_day(when))
        day.collected = (day.collected or Decimal(0)) + payment.amount
        await session.flush()

    # ------------------------------------------------------------ between re-ranks
    async def reassess(self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]) -> None:
        """After events: apply the rules and refresh the scores that depend only on each of
        these customers (all at once); a tier that changes is recorded and announced like
        a re-rank's."""
        policy = await repo.policies.active(session)
        if policy is None or not customer_ids:
            return
        aggregates = await repo.aggregates.get_many(session, customer_ids)
        if not aggregates:
            return
        stored = await repo.scores.get_or_create_many(session, [row.key for row in aggregates])
        document = PolicyDocument.model_validate(policy.document)
        now = utcnow()
        outcomes = await reassess(
            session, document, [(row, stored[row.key].band_tier) for row in aggregates], now
        )
        changes: list[TierChange] = []
        for aggregate in aggregates:
            outcome = outcomes.get(aggregate.customer_id)
            if outcome is not None:
                change = await self._apply_reassessment(
                    session, document, aggregate.customer_id, stored[aggregate.key], outcome
                )
                if change is not None:
                    changes.append(change)
        await session.flush()
        await self._record_tier_changes(session, policy, changes, now, now)

    @staticmethod
    async def _apply_reassessment(
        session: AsyncSession,
        document: PolicyDocument,
        customer_id: uuid.UUID,
        stored: CustomerScore,
        outcome: Reassessment,
    ) -> TierChange | None:
        """Store the customer's new scores; its tier change, if the rules moved it."""
        for name, value in outcome.scores.items():
            setattr(stored, name, value)
        if outcome.tier is None or outcome.tier == stored.tier:
            return None
        entries = await repo.history.for_customer(session, customer_id, limit=1)
        current = entries[0] if entries else None
        band_reasons = [
            r
            for r in (current.reasons if current else [])
            if not r.startswith(("lifted to", "capped at"))
        ][:1]
        assert stored.band_tier is not None
        reasons = band_reasons + rule_reasons(
            stored.band_tier, outcome.fired, outcome.rule_values, document
        )
        figures = {
            **(current.scores if current else {}),
            "rules": {k: str(v) for k, v in outcome.rule_values.items()},
        }
        change = TierChange(customer_id, stored.tier, outcome.tier, figures, reasons)
        stored.tier = outcome.tier
        return change

    # ------------------------------------------------------------ policies
    async def ensure_default_policy(self, session: AsyncSession) -> None:
        """On a new install, activate the default policy so customers are ranked at once."""
        if await repo.policies.count(session) > 0:
            return
        now = utcnow()
        try:
            async with session.begin_nested():
                await repo.policies.add(
                    session,
                    TierPolicy(
                        id=uuid.uuid4(),
                        name="default",
                        version=1,
                        document=DEFAULT_POLICY.model_dump(mode="json"),
                        status="active",
                        created_by="system",
                        created_at=now,
                        activated_at=now,
                    ),
                )
        except IntegrityError:
            pass  # another replica created it first

    async def create_policy(
        self, session: AsyncSession, data: PolicyCreate, actor: str
    ) -> TierPolicy:
        """A new draft: the next version of the policy with this name."""
        version = await repo.policies.latest_version(session, data.name) + 1
        policy = TierPolicy(
            id=uuid.uuid4(),
            name=data.name,
            version=version,
            document=data.document.model_dump(mode="json"),
            status="draft",
            created_by=actor,
            created_at=utcnow(),
        )
        await repo.policies.add(session, policy)
        return policy

    async def get_policy(self, session: AsyncSession, policy_id: uuid.UUID) -> TierPolicy:
        policy = await repo.policies.get(session, policy_id)
        if policy is None:
            raise NotFound(f"No policy {policy_id}.")
        return policy

    async def list_policies(
        self, session: AsyncSession, *, after: tuple[str, int] | None, limit: int
    ) -> Sequence[TierPolicy]:
        return await repo.policies.page(session, after=after, limit=limit)

    async def active_policy(self, session: AsyncSession) -> TierPolicy:
        policy = await repo.policies.active(session)
        if policy is None:
            raise Conflict("No policy is active; activate one first.")
        return policy

    async def activate_policy(
        self, session: AsyncSession, policy_id: uuid.UUID, as_of: dt.datetime | None
    ) -> RankingOutcome:
        """Make the policy the active one (the previous one retires) and re-rank under it."""
        policy = await self.get_policy(session, policy_id)
        if policy.status == "retired":
            raise Conflict("A retired policy cannot be activated again; create a new version.")
        if policy.status != "active":
            current = await repo.policies.active(session)
            if current is not None:
                current.status = "retired"
                await session.flush()
            policy.status = "active"
            policy.activated_at = utcnow()
            await session.flush()
        return await self.recompute(session, as_of)

    # ------------------------------------------------------------ ranking
    async def recompute(self, session: AsyncSession, as_of: dt.datetime | None) -> RankingOutcome:
        """Re-rank everyone under the active policy; record and announce each change."""
        await self._one_rerank_at_a_time(session)
        policy = await self.active_policy(session)
        document = PolicyDocument.model_validate(policy.document)
        moment = as_of or utcnow()
        ranking = await rank(session, document, moment, store_scores=True)
        now = utcnow()
        for start in range(0, len(ranking.movers), CHANGES_PER_WRITE):
            changes = [
                TierChange(
                    customer.customer_id,
                    customer.previous_tier,
                    customer.tier,
                    scores(customer, document),
                    explain(customer, document),
                )
                for customer in ranking.changed(start, start + CHANGES_PER_WRITE)
            ]
            await self._record_tier_changes(session, policy, changes, moment, now)
        return self._outcome(policy, document, moment, ranking)

    @staticmethod
    async def _record_tier_changes(
        session: AsyncSession,
        policy: TierPolicy,
        changes: list[TierChange],
        as_of: dt.datetime,
        now: dt.datetime,
    ) -> None:
        """Record tier changes (the new tiers are already stored with the scores): a
        history row and a `tier.changed` event each, in bulk."""
        if not changes:
            return
        count = len(changes)
        await repo.history.add_columns(
            session,
            {
                "customer_id": [change.customer_id for change in changes],
                "previous_tier": [change.previous for change in changes],
                "tier": [change.tier for change in changes],
                "policy_id": [policy.id] * count,
                "policy_version": [policy.version] * count,
                "scores": [change.figures for change in changes],
                "reasons": [change.reasons for change in changes],
                "as_of": [as_of] * count,
                "changed_at": [now] * count,
            },
        )
        event_ids = new_uuids(count)
        events = []
        for change, event_id in zip(changes, event_ids, strict=True):
            data = tier_changed_json(
                change.previous, change.tier, policy, change.figures, change.reasons, now
            )
            events.append(
                outbox_row(
                    producer=PRODUCER,
                    event_type="tier.changed",
                    customer_id=change.customer_id,
                    data=data,
                    occurred_at=now,
                    # Built from checked values (a test holds it to TierChanged's own dump):
                    # a re-rank can announce a million changes.
                    validated_json=data,
                    event_id=event_id,
                    created_at=now,
                )
            )
        await record_events(session, events)

    @staticmethod
    async def _one_rerank_at_a_time(session: AsyncSession) -> None:
        """Replicas (or a schedule and a request) never re-rank at once: two would both see
        the old tiers and announce the same change twice. SQLite has one writer anyway."""
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": RERANK_LOCK_ID}
            )

    async def simulate(
        self, session: AsyncSession, policy_id: uuid.UUID, as_of: dt.datetime | None
    ) -> RankingOutcome:
        """What the policy would do now (or as of a moment), applying nothing."""
        policy = await self.get_policy(session, policy_id)
        document = PolicyDocument.model_validate(policy.document)
        moment = as_of or utcnow()
        ranking = await rank(session, document, moment)
        return self._outcome(policy, document, moment, ranking)

    @staticmethod
    def _outcome(
        policy: TierPolicy, document: PolicyDocument, moment: dt.datetime, ranking: Ranking
    ) -> RankingOutcome:
        volume = sum(amount for _, amount in ranking.per_tier.values())
        return RankingOutcome(
            policy_id=policy.id,
            policy_version=policy.version,
            as_of=moment,
            customers=ranking.customers,
            changed=sum(ranking.moves.values()),
            tiers=[
                TierFigures(
                    tier=tier,
                    customers=ranking.per_tier.get(tier, (0, 0))[0],
                    revenue_share=round(ranking.per_tier.get(tier, (0, 0))[1] / volume, 4)
                    if volume > 0
                    else 0.0,
                )
                for tier in document.tier_order()
            ],
            moves={
                f"{before or 'none'}->{after}": count
                for (before, after), count in sorted(
                    ranking.moves.items(), key=lambda item: str(item[0])
                )
            },
            sample=[
                Mover(
                    customer_id=c.customer_id,
                    from_tier=c.previous_tier,
                    to_tier=c.tier,
                    reasons=explain(c, document),
                )
                for c in ranking.changed(0, SAMPLE_MOVERS)
            ],
        )

    # ------------------------------------------------------------ views
    async def tier_view(self, session: AsyncSession, customer_id: uuid.UUID) -> TierView:
        """The customer's tier, scores, reasons, history and aggregates."""
        aggregate = await repo.aggregates.get(session, customer_id)
        if aggregate is None:
            raise NotFound(f"Tiering knows no customer {customer_id}.")
        entries = await repo.history.for_customer(session, customer_id)
        row = await repo.scores.get(session, aggregate.key)
        stored = {name: getattr(row, name, None) for name in SCORE_FIELDS}
        stored["at_risk"] = bool(stored["at_risk"])
        # The current tier's reasons and figures are those of its latest assignment.
        current = entries[0] if entries else None
        return TierView(
            customer_id=customer_id,
            tier=row.tier if row is not None else None,
            at_risk=stored["at_risk"],
            scores={**(current.scores if current else {}), **method_scores(stored)},
            reasons=list(current.reasons if current else []),
            history=[TierHistoryEntry.model_validate(entry) for entry in entries],
            aggregates=Aggregates(
                revenue=aggregate.revenue,
                quantity=aggregate.quantity,
                collected=aggregate.collected,
                purchase_count=aggregate.purchase_count,
                first_purchase_at=aggregate.first_purchase_at,
                last_purchase_at=aggregate.last_purchase_at,
            ),
        )

    async def summary(self, session: AsyncSession, as_of: dt.datetime | None) -> TierSummary:
        """Per tier: customers, revenue share and collection ratio; and the 80/20 figure."""
        policy = await self.active_policy(session)
        document = PolicyDocument.model_validate(policy.document)
        moment = as_of or utcnow()
        window = document.bands.window_days
        tiers, total, top = await summary_figures(session, window, moment)
        order = document.tier_order() + sorted(
            {tier or "unranked" for tier in tiers} - set(document.tier_order())
        )
        rows = []
        for name in order:
            count, revenue, collected = tiers.get(name if name != "unranked" else None, (0, 0, 0))
            rows.append(
                SummaryTier(
                    tier=name,
                    customers=count,
                    revenue=in_units(revenue, "revenue"),
                    revenue_share=round(revenue / total, 4) if total > 0 else 0.0,
                    collection_ratio=round(collected / revenue, 4) if revenue > 0 else None,
                )
            )
        return TierSummary(
            policy_id=policy.id,
            policy_version=policy.version,
            window_days=window,
            as_of=moment,
            total_revenue=in_units(total, "revenue"),
            top_20_percent_revenue_share=round(top / total, 4) if total > 0 else 0.0,
            tiers=rows,
        )

    async def list_customers(
        self,
        session: AsyncSession,
        *,
        tier: str | None,
        at_risk: bool | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[tuple[CustomerAggregate, CustomerScore | None, list[str]]]:
        """Customers by tier and/or churn flag, as of the last re-rank, with their scores
        and the reasons for their tier."""
        found = await repo.aggregates.search(
            session, tier=tier, at_risk=at_risk, after=after, limit=limit
        )
        reasons = await repo.history.latest_reasons(
            session, [aggregate.customer_id for aggregate, _ in found]
        )
        return [
            (aggregate, score, reasons.get(aggregate.customer_id, [])) for aggregate, score in found
        ]


tiering_service = TieringService()
