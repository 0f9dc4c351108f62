"""Tiering rules: aggregates from events, policies, re-rank, explanations. Never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.backtest import run_backtest
from services.tiering.churn import current_model
from services.tiering.churn_fit import fit_churn_model
from services.tiering.ingest import customer_keys
from services.tiering.models import (
    SCORE_FIELDS,
    TIER_HISTORY,
    Backtest,
    ChurnModelFit,
    Complaint,
    CustomerAggregate,
    CustomerScore,
    PlacedCustomer,
    RankingRun,
    TierPolicy,
    Touch,
    epoch_day,
)
from services.tiering.ranking.compute import band_cutoffs
from services.tiering.ranking.explain import explain_assignment, method_scores
from services.tiering.ranking.figures import in_units
from services.tiering.ranking.placement import Placement, Reassessed, reassess
from services.tiering.ranking.store import Ranking, rank, store_scores
from services.tiering.ranking.summary import summary_figures
from services.tiering.schemas import (
    DEFAULT_POLICY,
    Aggregates,
    BacktestCreate,
    ChurnFeature,
    ChurnModelOut,
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
from shared.access import CustomerAccess
from shared.columnar import insert_columns, object_column, random_uuid_column
from shared.db import side_transaction, utcnow
from shared.errors import Conflict, Gone, InvalidInput, NotFound
from shared.events import (
    ComplaintClosed,
    ComplaintOpened,
    EventEnvelope,
)
from shared.heavy import in_thread, side_by_side
from shared.observability import current_correlation_id
from shared.outbox import PENDING_FLAG
from shared.revisions import Stamp, stamp_of, take

PRODUCER = "tiering"
PAST_TOLERANCE = dt.timedelta(minutes=1)
# Held alone by a re-rank, shared by the placements after events: a re-rank never runs
# beside another or beside a placement (both would see the old tiers and announce the same
# change twice), while placements of different customers run side by side.
RANKING_LOCK = 0x7131_2A4A
# Held from writing tier history until commit, by every writer of it: history rows commit
# in id order, which the tier.changed feed relies on (see feed.py).
HISTORY_LOCK = 0x7131_2A4B
SAMPLE_MOVERS = 20
RANKINGS_KEPT = 48
CHANGES_PER_WRITE = 250_000  # a re-rank writes tier changes in chunks: memory stays flat
# What a change after events copies from the customer's stored scores.
HISTORY_SCORES = tuple(name for name in SCORE_FIELDS if name != "band_tier")


def tier_changed_json(
    previous: str | None,
    tier: str,
    policy_id: uuid.UUID,
    policy_version: int,
    figures: dict[str, Any],
    reasons: list[str],
    changed_at: dt.datetime,
) -> dict[str, Any]:
    """`tier.changed` data as TierChanged(...).model_dump(mode="json") gives it once written
    by `event_json`, without building the model (scores and reasons are JSON values)."""
    return {
        "previous_tier": previous,
        "tier": tier,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "scores": figures,
        "reasons": reasons,
        "changed_at": changed_at,
    }


class TieringService:
    """Aggregates per customer, ranking policies and the tiers they give."""

    def __init__(self, full_ranking_below: int = 1000) -> None:
        # Below this many ranked customers, events re-rank everyone (TieringSettings).
        self.full_ranking_below = full_ranking_below

    # ------------------------------------------------------------ events
    async def note_customers(
        self, session: AsyncSession, changes: Sequence[tuple[EventEnvelope, Mapping[str, Any]]]
    ) -> None:
        """A batch of `customer.created` and `customer.updated` (each with its data's
        fields) at once: the rows of customers first seen are made in one statement, every
        row is read once, each event is applied to it in order, and one flush writes them.
        A created customer is known; the relationship level (the thermometer's) and whose
        customer it is (access) are taken unless a newer event already set them."""
        first_seen: dict[uuid.UUID, dt.datetime] = {}
        for event, _ in changes:
            seen = first_seen.get(event.customer_id)
            if seen is None or event.occurred_at < seen:
                first_seen[event.customer_id] = event.occurred_at
        await customer_keys(session, first_seen)
        aggregates = await repo.aggregates.many(session, list(first_seen))
        now = utcnow()
        for event, fields in changes:
            aggregate = aggregates[event.customer_id]
            if event.occurred_at < aggregate.first_seen_at:
                aggregate.first_seen_at = event.occurred_at
            if event.type == "customer.created":
                aggregate.known = True
                aggregate.updated_at = now
            _note_fields(aggregate, fields, stamp_of(event))
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
        """Tiering holds no personal data, only figures; an erased customer's are kept but
        leave the rankings, the summary and every later `tier.changed`."""
        aggregate = await repo.aggregates.get(session, customer_id)
        if aggregate is not None:
            aggregate.erased = True
            await session.flush()

    # ------------------------------------------------------------ between re-ranks
    async def reassess(self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]) -> None:
        """After events: apply the rules and refresh the scores that depend only on each of
        these customers (all at once); a tier that changes is recorded and announced like
        a re-rank's."""
        policy = await repo.policies.active(session)
        if policy is None or not customer_ids:
            return
        ranking = await repo.rankings.latest(session, policy.id)
        if ranking is None or ranking.customers < self.full_ranking_below:
            # No ranking yet, or a small one: ranking everyone again is as quick and exact.
            # (Decided before the shared lock: asking for it alone while holding it shared
            # would deadlock against another placement doing the same.)
            await self.recompute(session, None)
            return
        await _hold_lock(session, RANKING_LOCK, shared=True)
        # The latest ranking once no re-rank can commit beside us (one may have just now).
        ranking = await repo.rankings.latest(session, policy.id)
        if ranking is None:  # its policy's rankings went with it: the next one places them
            return
        # Each with its standing, read under the lock: a re-rank's tiers, or a later event's.
        aggregates = await repo.aggregates.placing_rows(session, customer_ids)
        document = PolicyDocument.model_validate(policy.document)
        now = utcnow()
        placement = Placement(ranking.cutoffs, ranking.as_of)
        placed = await reassess(session, document, aggregates, now, placement)
        if not placed.rows:
            return
        placed_rows = [aggregates[at] for at in placed.rows]
        previous = [row.tier for row in placed_rows]
        moved = [
            at
            for at, (before, after) in enumerate(zip(previous, placed.tiers, strict=True))
            if after is not None and after != before
        ]
        tiers = list(previous)
        history_ids = [row.history_id for row in placed_rows]
        first_id = await _reserve_history_ids(session, len(moved))
        for number, at in enumerate(moved):
            tiers[at] = placed.tiers[at]
            history_ids[at] = first_id + number
        # Every one's scores and scoring moment are new, whatever else changed.
        await repo.scores.put_columns(
            session,
            {
                "key": [row.key for row in placed_rows],
                "tier": tiers,
                **placed.scores,
                "band_tier": placed.band_tiers,
                "placed_value": placed.values,
                "scored_at": [now] * len(placed_rows),
                "history_id": history_ids,
            },
        )
        if moved:
            changes = [self._tier_change(document, placed_rows[at], placed, at) for at in moved]
            columns: dict[str, Any] = {
                name: object_column([row[name] for row in changes]) for name in changes[0]
            }
            columns["id"] = np.array([history_ids[at] for at in moved], dtype=np.int64)
            # One value for all (scalars): the placement's ranking moment, and what a
            # ranking's rows leave to their ranking.
            columns.update(
                ranking_as_of=placement.as_of,
                policy_id=policy.id,
                policy_version=policy.version,
                correlation_id=current_correlation_id(),
                as_of=now,
                changed_at=now,
            )
            await self._record_tier_changes(session, columns, len(changes))
            session.info[PENDING_FLAG] = True

    @staticmethod
    def _tier_change(
        document: PolicyDocument, customer: PlacedCustomer, placed: Reassessed, at: int
    ) -> dict[str, Any]:
        """The history figures of a customer whose band or rules moved it: the value
        against the ranking's cut-off (the ranking's moment is added by the caller, one for
        all). `customer` carries its standing (tier, RFM) as stored."""
        scores = {name: values[at] for name, values in placed.scores.items()}
        return {
            "customer_id": customer.customer_id,
            "customer_key": customer.key,
            "previous_id": customer.history_id,
            "previous_tier": customer.tier,
            "tier": placed.tiers[at],
            "value": placed.values[at],
            "cutoff": placed.cutoffs[at],
            "band_tier": placed.band_tiers[at],
            "rule_values": {k: str(v) for k, v in placed.rule_values(at).items()}
            if document.rules
            else None,
            "rules_fired": placed.fired(at) if document.rules else None,
            **{
                name: scores[name] if name in scores else getattr(customer, name)
                for name in HISTORY_SCORES
            },
        }

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
        """Make the policy the active one (the previous one retires) and re-rank under it,
        now: a past moment is refused (simulate or back-test that instead)."""
        if in_the_past(as_of):
            raise InvalidInput(
                "Activation ranks everyone as of now: for a past moment, simulate the policy "
                "or run a back-test (POST /v1/backtests).",
                errors=[{"field": "as_of", "in": "body", "message": "in the past", "type": "past"}],
            )
        refuse_the_future(as_of)
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
        """Re-rank everyone under the active policy; record and announce each change. As
        of a past moment it only says what that ranking was (`applied` false): current
        tiers are never overwritten by the past."""
        if in_the_past(as_of):
            policy = await self.active_policy(session)
            return await self.simulate(session, policy.id, as_of)
        refuse_the_future(as_of)
        return await self.apply_ranking(session, as_of or utcnow())

    async def apply_ranking(self, session: AsyncSession, moment: dt.datetime) -> RankingOutcome:
        """Rank everyone as of `moment` and make it current, whatever the moment (callers
        over HTTP go through `recompute`, which keeps the past and the future out)."""
        await _hold_lock(session, RANKING_LOCK, shared=False)
        policy = await self.active_policy(session)
        document = PolicyDocument.model_validate(policy.document)
        ranking = await rank(session, document, moment)
        ranking.number_changes(await _reserve_history_ids(session, len(ranking.movers)))
        run = await self._keep_band_edges(session, policy, ranking, moment, utcnow())
        # On PostgreSQL the history rows go in beside the score rows, through a second
        # connection: a first ranking writes a million of each, and one server process
        # writes them one after the other. They name the ranking, whose row commits with
        # the scores after them; until then `history_rows` (so the relay) does not see
        # them, and if this transaction fails they are never seen.
        async with side_transaction(session) as side:
            if side is None:
                await store_scores(session, ranking)
                await self._record_ranking_changes(session, ranking, run.id)
            else:
                await side_by_side(
                    store_scores(session, ranking),
                    self._record_ranking_changes(side, ranking, run.id),
                )
        if len(ranking.movers):
            session.info[PENDING_FLAG] = True
        return self._outcome(policy, document, moment, ranking)

    async def _record_ranking_changes(
        self, session: AsyncSession, ranking: Ranking, ranking_id: int
    ) -> None:
        """The ranking's tier changes, in chunks (memory stays flat); what all of them
        share is the ranking's row (`history_rows` reads it there)."""
        for start in range(0, len(ranking.movers), CHANGES_PER_WRITE):
            stop = min(start + CHANGES_PER_WRITE, len(ranking.movers))
            columns = await in_thread(ranking.history_columns, start, stop)
            columns["ranking_id"] = ranking_id
            await self._record_tier_changes(session, columns, stop - start)

    # ------------------------------------------------------------ churn model
    async def fit_churn_model(self, session: AsyncSession) -> ChurnModelFit:
        """Fit the churn model on the history under the active policy and keep the fit
        (its risk applies from the next ranking)."""
        policy = await self.active_policy(session)
        document = PolicyDocument.model_validate(policy.document)
        fit = await fit_churn_model(session, document, utcnow())
        await repo.churn_fits.add(session, fit)
        return fit

    async def fit_churn_model_if_due(
        self, session: AsyncSession, interval_s: float
    ) -> ChurnModelFit | None:
        """Fit when the latest fit is `interval_s` old or there is none (0: never)."""
        if not interval_s:
            return None
        latest = await repo.churn_fits.latest(session)
        if latest is not None and (utcnow() - latest.fitted_at).total_seconds() < interval_s:
            return None
        return await self.fit_churn_model(session)

    async def churn_model(self, session: AsyncSession) -> ChurnModelOut:
        """The latest fit, and whether the active policy scores with it."""
        fit = await repo.churn_fits.latest(session)
        if fit is None:
            return ChurnModelOut(
                status="rules",
                reason="not fitted yet: POST /v1/churn-model/fit, or wait for the daily fit",
                fitted_at=None,
                horizon_days=None,
                label_days=None,
                trained_on=0,
                tested_on=0,
                churned_share=None,
                auc=None,
                recency_auc=None,
                features=[],
            )
        document = PolicyDocument.model_validate((await self.active_policy(session)).document)
        in_use = await current_model(session, document) is not None
        reason = fit.reason
        if fit.used and not in_use:
            reason = "the active policy's churn method or horizon is not this fit's"
        stored = fit.model or {}
        return ChurnModelOut(
            status="learned" if in_use else "rules",
            reason=None if in_use else reason,
            fitted_at=fit.fitted_at,
            horizon_days=fit.horizon_days,
            label_days=fit.label_days,
            trained_on=fit.trained_on,
            tested_on=fit.tested_on,
            churned_share=fit.churned_share,
            auc=fit.auc,
            recency_auc=fit.recency_auc,
            features=[
                ChurnFeature(name=name, weight=round(weight, 4))
                for name, weight in zip(
                    stored.get("features", []), stored.get("weights", []), strict=True
                )
            ],
        )

    @staticmethod
    async def _keep_band_edges(
        session: AsyncSession,
        policy: TierPolicy,
        ranking: Ranking,
        as_of: dt.datetime,
        now: dt.datetime,
    ) -> RankingRun:
        """Keep the ranking's band edges for placing customers after events, and what
        its history rows share; the policy's older rankings beyond the last few go,
        unless history rows name them."""
        bands = ranking.scored.bands
        band_count = len(ranking.scored.figures.policy.bands.tiers)
        run = RankingRun(
            policy_id=policy.id,
            policy_version=policy.version,
            as_of=as_of,
            ranked_at=now,
            customers=ranking.customers,
            total=bands.total,
            cutoffs=band_cutoffs(bands, band_count),
            correlation_id=current_correlation_id(),
            changes=len(ranking.movers),
        )
        await repo.rankings.add(session, run)
        await repo.rankings.prune(session, policy.id, RANKINGS_KEPT)
        return run

    @staticmethod
    async def _record_tier_changes(
        session: AsyncSession, columns: dict[str, Any], count: int
    ) -> None:
        """Record tier changes (the new tiers are already stored with the scores, with
        these rows' ids, reserved by `_reserve_history_ids`): a history row each, in bulk,
        which is also its `tier.changed` event (feed.py). The caller flags the transaction
        whose commit makes them visible (a ranking writes them in another one)."""
        if not count:
            return
        columns = {**columns, "event_id": random_uuid_column(count)}
        await insert_columns(session, TIER_HISTORY, columns, count)

    async def simulate(
        self, session: AsyncSession, policy_id: uuid.UUID, as_of: dt.datetime | None
    ) -> RankingOutcome:
        """What the policy would do now (or as of a moment), applying nothing."""
        policy = await self.get_policy(session, policy_id)
        document = PolicyDocument.model_validate(policy.document)
        moment = as_of or utcnow()
        ranking = await rank(session, document, moment)
        outcome = self._outcome(policy, document, moment, ranking)
        outcome.applied = False
        return outcome

    # ------------------------------------------------------------ back-tests
    async def create_backtest(
        self, session: AsyncSession, body: BacktestCreate, actor: str
    ) -> Backtest:
        """A policy (the active one by default) applied as of a past moment, as a report."""
        policy = (
            await self.get_policy(session, body.policy_id)
            if body.policy_id is not None
            else await self.active_policy(session)
        )
        document = PolicyDocument.model_validate(policy.document)
        horizon = body.horizon_days or (document.churn.horizon_days if document.churn else 90)
        backtest = await run_backtest(session, policy, body.as_of, horizon, actor)
        await repo.backtests.prune(session)
        return backtest

    async def get_backtest(self, session: AsyncSession, backtest_id: uuid.UUID) -> Backtest:
        backtest = await repo.backtests.get(session, backtest_id)
        if backtest is None:
            raise NotFound("No such back-test (only the newest 20 are kept).")
        return backtest

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
                    customer_id=row["customer_id"],
                    from_tier=row["previous_tier"],
                    to_tier=row["tier"],
                    reasons=explain_assignment(row, document)[1],
                )
                for row in ranking.changed_rows(0, SAMPLE_MOVERS)
            ],
        )

    # ------------------------------------------------------------ views
    async def tier_view(
        self, session: AsyncSession, customer_id: uuid.UUID, access: CustomerAccess
    ) -> TierView:
        """The customer's tier, scores, reasons, history and aggregates (a customer out of
        the principal's view is not found, as on profile)."""
        aggregate = await repo.aggregates.get(session, customer_id)
        if aggregate is None or not access.may_see_customer(aggregate.account_manager):
            raise NotFound(f"Tiering knows no customer {customer_id}.")
        if aggregate.erased:  # as on profile: it left every ranking, so it has no tier
            raise Gone(f"Customer {customer_id} was erased.")
        entries = await repo.history.for_customer(session, aggregate.key)
        row = await repo.scores.get(session, aggregate.key)
        stored = {name: getattr(row, name, None) for name in SCORE_FIELDS}
        stored["at_risk"] = bool(stored["at_risk"])
        explained = await self._explain(session, entries)
        standing = await self._standing(session, aggregate, row)
        as_of: dt.datetime | None
        basis: str | None
        if standing is not None:
            current_scores, current_reasons, as_of, basis = standing
        else:  # a score row from before it kept its figures: its latest assignment's
            current_scores, current_reasons = explained[0] if explained else ({}, [])
            as_of = entries[0]["as_of"] if entries else None
            basis = None
            if entries:
                basis = "ranking" if entries[0]["ranking_as_of"] is None else "event"
        return TierView(
            customer_id=customer_id,
            tier=row.tier if row is not None else None,
            at_risk=stored["at_risk"],
            as_of=as_of,
            basis=basis,
            scores={**current_scores, **method_scores(stored)},
            reasons=current_reasons,
            history=[
                TierHistoryEntry(
                    tier=entry["tier"],
                    previous_tier=entry["previous_tier"],
                    policy_id=entry["policy_id"],
                    policy_version=entry["policy_version"],
                    reasons=reasons,
                    scores=figures,
                    as_of=entry["as_of"],
                    changed_at=entry["changed_at"],
                )
                for entry, (figures, reasons) in zip(entries, explained, strict=True)
            ],
            aggregates=Aggregates(**await repo.aggregates.lifetime(session, aggregate.key)),
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
        access: CustomerAccess,
    ) -> list[tuple[CustomerAggregate, CustomerScore | None, list[str]]]:
        """The customers within the principal's view by tier and/or churn flag, with their
        scores and the reasons for their tier."""
        found = await repo.aggregates.search(
            session,
            tier=tier,
            at_risk=at_risk,
            after=after,
            limit=limit,
            manager=access.manager_scope,
        )
        latest = await repo.history.latest(session, [aggregate.key for aggregate, _ in found])
        explained = await self._explain(session, list(latest.values()))
        reasons = {key: words for key, (_, words) in zip(latest, explained, strict=True)}
        return [(aggregate, score, reasons.get(aggregate.key, [])) for aggregate, score in found]

    @staticmethod
    async def _standing(
        session: AsyncSession, aggregate: CustomerAggregate, row: CustomerScore | None
    ) -> tuple[dict[str, Any], list[str], dt.datetime, str] | None:
        """The current tier's figures and reasons, all of one moment: the latest full
        ranking (the row's value in it; rank and the share ahead counted from everyone's
        values in that ranking, its count and total from the ranking) or the later event
        that placed the customer against that ranking's band edges; the rules' figures as
        of the same moment. None when the row holds no figures (written before it kept
        them)."""
        policy = await repo.policies.active(session)
        if row is None or row.band_tier is None or policy is None:
            return None
        ranking = await repo.rankings.latest(session, policy.id)
        if ranking is None or ranking.total is None:
            return None
        # A full ranking's write leaves no placement moment; a placement before the
        # latest ranking was overtaken by it (the ranking left the row as it found it).
        by_ranking = row.scored_at is None or row.scored_at <= ranking.as_of
        value = row.ranked_value if by_ranking else row.placed_value
        if value is None:
            return None
        document = PolicyDocument.model_validate(policy.document)
        moment = ranking.as_of if by_ranking or row.scored_at is None else row.scored_at
        placed = await reassess(session, document, [aggregate], moment, bands=[row.band_tier])
        figures: dict[str, Any] = {
            "customer_id": aggregate.customer_id,
            "customer_key": aggregate.key,
            "previous_tier": None,
            "tier": row.tier,
            "band_tier": row.band_tier,
            "value": value,
            "rule_values": (
                {k: str(v) for k, v in placed.rule_values(0).items()} if placed.rows else None
            ),
            "rules_fired": placed.fired(0) if placed.rows else None,
            **{name: getattr(row, name) for name in HISTORY_SCORES},
        }
        if by_ranking:
            ahead, customers_ahead = await repo.scores.ranked_ahead_of(session, max(value, 0))
            total = ranking.total
            figures |= {
                "rank": customers_ahead + 1,
                "customers": ranking.customers,
                "cumulative_share": (ahead + max(value, 0)) / total if total > 0 else 0.0,
                "share_ahead": ahead / total if total > 0 and value > 0 else 0.0,
                "ranking_as_of": None,
            }
        else:
            placement = Placement(ranking.cutoffs, ranking.as_of)
            figures |= {
                "cutoff": placement.bands_of(np.array([value]), document)[1][0],
                "ranking_as_of": ranking.as_of,
            }
        scores, reasons = explain_assignment(figures, document)
        return scores, reasons, moment, "ranking" if by_ranking else "event"

    @staticmethod
    async def _explain(
        session: AsyncSession, entries: Sequence[Mapping[Any, Any]]
    ) -> list[tuple[dict[str, Any], list[str]]]:
        """(scores, reasons) of history rows, each under its own policy."""
        documents: dict[uuid.UUID, PolicyDocument] = {}
        return [
            explain_assignment(entry, await policy_document(session, entry["policy_id"], documents))
            for entry in entries
        ]


async def policy_document(
    session: AsyncSession, policy_id: uuid.UUID, known: dict[uuid.UUID, PolicyDocument]
) -> PolicyDocument:
    """A policy's document, from `known` if there (a policy never changes once used)."""
    if policy_id not in known:
        policy = await repo.policies.get(session, policy_id)
        if policy is None:  # policies are never deleted
            raise LookupError(f"tier history names an unknown policy {policy_id}")
        known[policy_id] = PolicyDocument.model_validate(policy.document)
    return known[policy_id]


def in_the_past(as_of: dt.datetime | None) -> bool:
    """A moment earlier than now (beyond a clock's drift between client and server)."""
    return as_of is not None and as_of < utcnow() - PAST_TOLERANCE


def refuse_the_future(as_of: dt.datetime | None) -> None:
    """Tiers written now are never those of a moment still to come."""
    if as_of is not None and as_of > utcnow() + PAST_TOLERANCE:
        raise InvalidInput(
            "as_of lies in the future: current tiers are ranked as of now (simulate a "
            "policy to see a later moment).",
            errors=[{"field": "as_of", "in": "body", "message": "in the future", "type": "future"}],
        )


tiering_service = TieringService()


async def _reserve_history_ids(session: AsyncSession, count: int) -> int:
    """The first of `count` consecutive ids for new history rows, with the history lock
    held from now until commit: rows commit in id order, which the relay's feed reads
    them in. The score rows name their customers' new rows before those are written."""
    if not count:
        return 0
    await _hold_lock(session, HISTORY_LOCK, shared=False)
    return await repo.history.reserve_ids(session, count)


async def _hold_lock(session: AsyncSession, lock_id: int, *, shared: bool) -> None:
    """Wait for, then hold until commit, a PostgreSQL advisory lock (RANKING_LOCK,
    HISTORY_LOCK). SQLite has one writer anyway."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await session.execute(text(f"SELECT {function}(:lock_id)"), {"lock_id": lock_id})


def _note_fields(aggregate: CustomerAggregate, fields: Mapping[str, Any], stamp: Stamp) -> None:
    """The customer fields tiering keeps, each unless a newer event already set it."""
    stamps = dict(aggregate.field_stamps or {})
    level = fields.get("relationship_level")
    if isinstance(level, str) and take(stamps, "relationship_level", stamp):
        aggregate.relationship_level = level
    if "account_manager" in fields and take(
        stamps, "account_manager", stamp, aggregate.account_manager_at
    ):
        aggregate.account_manager = fields["account_manager"]
        aggregate.account_manager_at = stamp.at
    aggregate.field_stamps = stamps
