"""All of tiering's SQL outside the re-rank's column reads (ranking/) and the bulk
upserts of purchases and payments (ingest.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping, delete, func, literal, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import (
    CUSTOMER_COLUMNS,
    CUSTOMER_KEYS,
    STANDING_COLUMNS,
    TIER_HISTORY,
    Backtest,
    BacktestCustomer,
    ChurnModelFit,
    Complaint,
    CustomerAggregate,
    CustomerScore,
    DailyActivity,
    RankingRun,
    TierPolicy,
    Touch,
    history_rows,
)
from shared.db import column_in, expire_held, upsert_columns


class AggregateRepository:
    async def get(self, session: AsyncSession, customer_id: uuid.UUID) -> CustomerAggregate | None:
        return await session.get(CustomerAggregate, customer_id)

    async def many(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, CustomerAggregate]:
        """The aggregate rows of these customers that exist, by customer, a thousand a
        statement."""
        dialect = session.get_bind().dialect
        found: dict[uuid.UUID, CustomerAggregate] = {}
        for start in range(0, len(customer_ids), 1000):
            chosen = customer_ids[start : start + 1000]
            query = select(CustomerAggregate).where(
                column_in(CustomerAggregate.__table__.c.customer_id, chosen, dialect)
            )
            found.update(
                (aggregate.customer_id, aggregate) for aggregate in await session.scalars(query)
            )
        return found

    async def placing_rows(
        self, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
    ) -> Sequence[Any]:
        """What placing these customers takes of their aggregates (`CUSTOMER_COLUMNS`) and
        of their standing as stored (`STANDING_COLUMNS`, none without a score row), as
        plain rows: a batch of events reads thousands, and ORM objects cost more to make
        than the placement itself. Changes the session holds are written first (a Core
        read does not flush them), so the rows include them."""
        await session.flush()
        dialect = session.get_bind().dialect
        aggregates = CustomerAggregate.__table__
        found: list[Any] = []
        for start in range(0, len(customer_ids), 1000):
            chosen = customer_ids[start : start + 1000]
            query = (
                select(*CUSTOMER_COLUMNS, *STANDING_COLUMNS)
                .select_from(
                    aggregates.outerjoin(
                        CustomerScore.__table__, CustomerScore.key == aggregates.c.key
                    )
                )
                .where(column_in(aggregates.c.customer_id, chosen, dialect))
            )
            found.extend((await session.execute(query)).all())
        return found

    @staticmethod
    async def lifetime(session: AsyncSession, key: int) -> dict[str, Any]:
        """A customer's lifetime figures, the sums of its daily rows: revenue, quantity,
        collected, purchase_count, first_purchase_at and last_purchase_at."""
        daily = DailyActivity.__table__.c
        found = await session.execute(
            select(
                func.coalesce(func.sum(daily.revenue), 0).label("revenue"),
                func.coalesce(func.sum(daily.quantity), 0).label("quantity"),
                func.coalesce(func.sum(daily.collected), 0).label("collected"),
                func.coalesce(func.sum(daily.purchases), 0).label("purchase_count"),
                func.min(daily.first_purchase_at).label("first_purchase_at"),
                func.max(daily.last_purchase_at).label("last_purchase_at"),
            ).where(daily.customer_key == key)
        )
        return dict(found.one()._mapping)

    async def get_or_create(
        self, session: AsyncSession, customer_id: uuid.UUID, seen_at: dt.datetime
    ) -> CustomerAggregate:
        # One customer's events share a partition and are applied one at a time,
        # so there is no race between this read and the insert.
        aggregate = await session.get(CustomerAggregate, customer_id)
        if aggregate is None:
            [key] = await self.new_keys(session, 1)
            aggregate = CustomerAggregate(customer_id=customer_id, first_seen_at=seen_at, key=key)
            session.add(aggregate)
            await session.flush()  # the next new customer's key counts this one
        elif seen_at < aggregate.first_seen_at:
            aggregate.first_seen_at = seen_at
        return aggregate

    @staticmethod
    async def new_keys(session: AsyncSession, count: int) -> list[int]:
        """`count` unused customer keys (the sequence on PostgreSQL; on SQLite, which has one
        writer at a time, the ones after the largest)."""
        if session.get_bind().dialect.name == "postgresql":
            found = await session.execute(
                select(CUSTOMER_KEYS.next_value()).select_from(func.generate_series(1, count))
            )
            return [int(value) for value in found.scalars()]
        largest = int(await session.scalar(select(func.max(CustomerAggregate.key))) or 0)
        return list(range(largest + 1, largest + 1 + count))

    async def search(
        self,
        session: AsyncSession,
        *,
        tier: str | None,
        at_risk: bool | None,
        after: uuid.UUID | None,
        limit: int,
        manager: str | None = None,
    ) -> Sequence[tuple[CustomerAggregate, CustomerScore | None]]:
        query = (
            select(CustomerAggregate, CustomerScore)
            .outerjoin(CustomerScore, CustomerScore.key == CustomerAggregate.key)
            .where(CustomerAggregate.erased.is_(False))  # erased: in no list, as in no ranking
        )
        if manager is not None:  # an account manager sees their own customers alone
            query = query.where(CustomerAggregate.account_manager == manager)
        if tier is not None:
            query = query.where(CustomerScore.tier == tier)
        if at_risk is not None:
            flagged = CustomerScore.at_risk.is_(True)
            query = query.where(flagged if at_risk else ~flagged | CustomerScore.key.is_(None))
        if after is not None:
            query = query.where(CustomerAggregate.customer_id > after)
        query = query.order_by(CustomerAggregate.customer_id).limit(limit)
        return [(aggregate, score) for aggregate, score in (await session.execute(query)).all()]


class ScoreRepository:
    async def get(self, session: AsyncSession, key: int) -> CustomerScore | None:
        return await session.get(CustomerScore, key)

    async def ranked_ahead_of(self, session: AsyncSession, value: int) -> tuple[int, int]:
        """In the latest full ranking: the metric held by the customers above `value`, and
        how many they are (one scan of the narrow score rows: a GET's cost, not a write's)."""
        table = CustomerScore.__table__
        found = (
            await session.execute(
                select(func.coalesce(func.sum(table.c.ranked_value), 0), func.count()).where(
                    table.c.ranked_value > value
                )
            )
        ).one()
        return int(found[0]), int(found[1])

    async def put_columns(self, session: AsyncSession, columns: dict[str, Sequence[Any]]) -> None:
        """Insert these score rows, or set their given columns where they exist (one list
        per column, the key among them), in one statement."""
        if not columns["key"]:
            return
        names = [name for name in columns if name != "key"]
        await upsert_columns(
            session,
            CustomerScore.__table__,
            columns,
            ["key"],
            lambda new: {name: new[name] for name in names},
        )
        expire_held(session, CustomerScore, columns["key"])


class TouchRepository:
    async def add(self, session: AsyncSession, touch: Touch) -> None:
        session.add(touch)
        await session.flush()


class ComplaintRepository:
    async def open(self, session: AsyncSession, complaint: Complaint) -> None:
        """A late `complaint.opened` (after its `complaint.closed`) fills in what the
        close could not know, and leaves the complaint closed."""
        known = await session.get(Complaint, complaint.complaint_id)
        if known is None:
            session.add(complaint)
        else:
            known.severity = complaint.severity
            known.opened_at = min(known.opened_at, complaint.opened_at)
        await session.flush()

    async def close(
        self,
        session: AsyncSession,
        complaint_id: uuid.UUID,
        customer_id: uuid.UUID,
        at: dt.datetime,
        satisfaction: int | None,
    ) -> None:
        complaint = await session.get(Complaint, complaint_id)
        if complaint is None:  # closed before we saw it open: keep what we know
            complaint = Complaint(
                complaint_id=complaint_id, customer_id=customer_id, severity="unknown", opened_at=at
            )
            session.add(complaint)
        complaint.closed_at = at
        complaint.satisfaction = satisfaction
        await session.flush()


class PolicyRepository:
    async def get(self, session: AsyncSession, policy_id: uuid.UUID) -> TierPolicy | None:
        return await session.get(TierPolicy, policy_id)

    async def active(self, session: AsyncSession) -> TierPolicy | None:
        found = await session.execute(select(TierPolicy).where(TierPolicy.status == "active"))
        return found.scalar_one_or_none()

    async def latest_version(self, session: AsyncSession, name: str) -> int:
        found = await session.execute(
            select(func.max(TierPolicy.version)).where(TierPolicy.name == name)
        )
        return int(found.scalar() or 0)

    async def count(self, session: AsyncSession) -> int:
        return int(
            (await session.execute(select(func.count()).select_from(TierPolicy))).scalar() or 0
        )

    async def page(
        self, session: AsyncSession, *, after: tuple[str, int] | None, limit: int
    ) -> Sequence[TierPolicy]:
        query = select(TierPolicy)
        if after is not None:
            name, version = after
            query = query.where(
                (TierPolicy.name > name)
                | ((TierPolicy.name == name) & (TierPolicy.version > version))
            )
        query = query.order_by(TierPolicy.name, TierPolicy.version).limit(limit)
        return (await session.execute(query)).scalars().all()

    async def add(self, session: AsyncSession, policy: TierPolicy) -> None:
        session.add(policy)
        await session.flush()


class HistoryRepository:
    """Tier history rows as mappings of their columns (what `explain_assignment` reads)."""

    async def reserve_ids(self, session: AsyncSession, count: int) -> int:
        """The first of `count` consecutive ids taken for new rows now (the caller holds
        the history lock, so no other writer numbers rows meanwhile)."""
        if session.get_bind().dialect.name == "postgresql":
            sequence = "pg_get_serial_sequence('tier_history', 'id')"
            last = await session.scalar(
                text(f"SELECT setval({sequence}, nextval({sequence}) + :count - 1)"),
                {"count": count},
            )
            return int(last) - count + 1
        largest = await session.scalar(select(func.max(TIER_HISTORY.c.id)))
        return (largest or 0) + 1

    async def latest(
        self, session: AsyncSession, customer_keys: Sequence[int]
    ) -> dict[int, RowMapping]:
        """Each customer's latest assignment (that of its current tier), by customer key."""
        if not customer_keys:
            return {}
        latest = select(CustomerScore.history_id).where(CustomerScore.key.in_(customer_keys))
        found = await session.execute(history_rows().where(TIER_HISTORY.c.id.in_(latest)))
        return {row["customer_key"]: row for row in found.mappings().all()}

    async def for_customer(
        self, session: AsyncSession, customer_key: int, limit: int = 100
    ) -> Sequence[RowMapping]:
        """The customer's assignments, latest first: its chain from the score row on."""
        chain = (
            select(TIER_HISTORY.c.id, TIER_HISTORY.c.previous_id, literal(1).label("depth"))
            .join(CustomerScore, CustomerScore.history_id == TIER_HISTORY.c.id)
            .where(CustomerScore.key == customer_key)
            .cte("chain", recursive=True)
        )
        step = TIER_HISTORY.alias("step")
        chain = chain.union_all(
            select(step.c.id, step.c.previous_id, (chain.c.depth + 1).label("depth"))
            .join(chain, step.c.id == chain.c.previous_id)
            .where(chain.c.depth < limit)
        )
        query = (
            history_rows()
            .join(chain, chain.c.id == TIER_HISTORY.c.id)
            .order_by(TIER_HISTORY.c.id.desc())
        )
        found: Sequence[RowMapping] = (await session.execute(query)).mappings().all()
        return found


class RankingRepository:
    async def latest(self, session: AsyncSession, policy_id: uuid.UUID) -> RankingRun | None:
        """The policy's ranking of the latest moment (a back-test of an earlier moment,
        ranked later, does not replace it)."""
        found = await session.scalars(
            select(RankingRun)
            .where(RankingRun.policy_id == policy_id)
            .order_by(RankingRun.as_of.desc(), RankingRun.id.desc())
            .limit(1)
        )
        return found.first()

    async def add(self, session: AsyncSession, ranking: RankingRun) -> None:
        session.add(ranking)
        await session.flush()

    async def prune(self, session: AsyncSession, policy_id: uuid.UUID, keep: int) -> None:
        """Drop the policy's rankings but the `keep` latest and those that changed tiers
        (their history rows read what they share from them)."""
        latest = (
            select(RankingRun.id)
            .where(RankingRun.policy_id == policy_id)
            .order_by(RankingRun.as_of.desc(), RankingRun.id.desc())
            .limit(keep)
        )
        await session.execute(
            delete(RankingRun).where(
                RankingRun.policy_id == policy_id,
                RankingRun.changes == 0,
                RankingRun.id.not_in(latest),
            )
        )


class ChurnFitRepository:
    async def latest(self, session: AsyncSession) -> ChurnModelFit | None:
        found = await session.execute(
            select(ChurnModelFit).order_by(ChurnModelFit.id.desc()).limit(1)
        )
        return found.scalar_one_or_none()

    async def add(self, session: AsyncSession, fit: ChurnModelFit) -> None:
        session.add(fit)
        await session.flush()


class BacktestRepository:
    KEEP = 20  # reports kept: a back-test of a million customers is a million rows

    async def get(self, session: AsyncSession, backtest_id: uuid.UUID) -> Backtest | None:
        return await session.get(Backtest, backtest_id)

    async def page(
        self, session: AsyncSession, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[Backtest]:
        """Newest first."""
        query = select(Backtest).order_by(Backtest.created_at.desc(), Backtest.id.desc())
        if after is not None:
            query = query.where(tuple_(Backtest.created_at, Backtest.id) < after)
        return (await session.execute(query.limit(limit))).scalars().all()

    async def customers(
        self,
        session: AsyncSession,
        backtest_id: uuid.UUID,
        after: tuple[int, int] | None,
        limit: int,
    ) -> Sequence[BacktestCustomer]:
        """Best rank first."""
        query = (
            select(BacktestCustomer)
            .where(BacktestCustomer.backtest_id == backtest_id)
            .order_by(BacktestCustomer.rank, BacktestCustomer.customer_key)
        )
        if after is not None:
            query = query.where(
                tuple_(BacktestCustomer.rank, BacktestCustomer.customer_key) > after
            )
        return (await session.execute(query.limit(limit))).scalars().all()

    async def prune(self, session: AsyncSession) -> None:
        """Keep the newest KEEP reports."""
        old = (
            (
                await session.execute(
                    select(Backtest.id)
                    .order_by(Backtest.created_at.desc(), Backtest.id.desc())
                    .offset(self.KEEP)
                )
            )
            .scalars()
            .all()
        )
        if old:
            await session.execute(
                delete(BacktestCustomer).where(BacktestCustomer.backtest_id.in_(old))
            )
            await session.execute(delete(Backtest).where(Backtest.id.in_(old)))


aggregates = AggregateRepository()
scores = ScoreRepository()
touches = TouchRepository()
complaints = ComplaintRepository()
policies = PolicyRepository()
history = HistoryRepository()
rankings = RankingRepository()
churn_fits = ChurnFitRepository()
backtests = BacktestRepository()
