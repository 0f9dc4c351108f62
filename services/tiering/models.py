"""Tiering tables: what events taught us about each customer, the policies, the tiers."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    Select,
    Sequence,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import ScaledDecimal, UTCDateTime, new_metadata, utcnow
from shared.outbox import include_shared_tables

_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)

# Numbers customers on PostgreSQL; SQLite (one writer) takes the largest key plus one.
CUSTOMER_KEYS = Sequence("customer_key_seq", metadata=Base.metadata)


class CustomerAggregate(Base):
    """One row per customer seen: its key, what `customer.*` said of it, and when it was
    first seen. Its lifetime figures are the sums of its `DailyActivity` rows."""

    __tablename__ = "customer_aggregates"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # A small dense number for the customer: the daily rows are keyed by it, and the
    # re-rank indexes its arrays with it (see ranking/figures.py).
    key: Mapped[int] = mapped_column(Integer, unique=True)
    known: Mapped[bool] = mapped_column(default=False)  # customer.created seen
    erased: Mapped[bool] = mapped_column(default=False)
    relationship_level: Mapped[str | None] = mapped_column(String(30))
    # Whose customer it is (shared.access), and the time of the event that said so.
    account_manager: Mapped[str | None] = mapped_column(String(100), index=True)
    account_manager_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Per field taken from `customer.*`, the stamp of the event that set it
    # (shared.revisions): an older event arriving later changes nothing.
    field_stamps: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnownCustomer(Protocol):
    """What the per-customer reads take of a customer's aggregate: its ORM row or a plain
    row of these columns (`CUSTOMER_COLUMNS`)."""

    @property
    def key(self) -> int: ...
    @property
    def customer_id(self) -> uuid.UUID: ...
    @property
    def first_seen_at(self) -> dt.datetime: ...
    @property
    def erased(self) -> bool: ...
    @property
    def relationship_level(self) -> str | None: ...


CUSTOMER_COLUMNS = (
    CustomerAggregate.__table__.c.key,
    CustomerAggregate.__table__.c.customer_id,
    CustomerAggregate.__table__.c.first_seen_at,
    CustomerAggregate.__table__.c.erased,
    CustomerAggregate.__table__.c.relationship_level,
)


class PlacedCustomer(KnownCustomer, Protocol):
    """A customer to place: its aggregate's columns and its standing as stored (all None
    without a score row): `CUSTOMER_COLUMNS` and `STANDING_COLUMNS`."""

    @property
    def tier(self) -> str | None: ...
    @property
    def band_tier(self) -> str | None: ...
    @property
    def rfm_r(self) -> int | None: ...
    @property
    def rfm_f(self) -> int | None: ...
    @property
    def rfm_m(self) -> int | None: ...
    @property
    def history_id(self) -> int | None: ...


class CustomerScore(Base):
    """A customer's standing: its tier, the band the last re-rank gave it, and its scores
    (of the last re-rank, or of the customer's last event); one narrow row per customer
    ranked, by customer key. Why the tier is what it is (reasons, figures) is the
    customer's latest `TierHistory`.

    Kept apart from the aggregate row on purpose: churn risk moves with the date, so a
    daily re-rank rewrites most customers' scores, and a first ranking gives everyone a
    tier; narrow rows are several times cheaper to write (on PostgreSQL the table also
    leaves room in its pages, see migration 0004, so rewrites stay in place)."""

    __tablename__ = "customer_scores"

    key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tier: Mapped[str | None] = mapped_column(String(40))
    # The band before rules (per-event rules start from it).
    band_tier: Mapped[str | None] = mapped_column(String(40))
    rfm_r: Mapped[int | None]
    rfm_f: Mapped[int | None]
    rfm_m: Mapped[int | None]
    value_segment: Mapped[str | None] = mapped_column(String(20))
    thermometer: Mapped[float | None]
    churn_risk: Mapped[float | None]
    at_risk: Mapped[bool] = mapped_column(default=False)
    # The band value (metric over the window, stored units) in the latest full ranking
    # (a row the ranking left alone still holds it; rank and the share ahead follow from
    # everyone's), the value a later event's placement compared and its moment (NULL
    # once a ranking rewrites the row).
    ranked_value: Mapped[int | None] = mapped_column(BigInteger)
    placed_value: Mapped[int | None] = mapped_column(BigInteger)
    scored_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The customer's latest `TierHistory` (that of its tier): where its chain starts.
    history_id: Mapped[int | None] = mapped_column(BigInteger)

    # Lists by tier walk the customers in order and skip the others (cheap unless a tier
    # is very rare); customers at risk are found through this small index, which a
    # re-rank writes only for them (an index of every row by tier or flag cost a first
    # ranking ~1.4 s per million customers).
    __table_args__ = (
        Index(
            "ix_customer_scores_at_risk",
            "tier",
            sqlite_where=text("at_risk"),
            postgresql_where=text("at_risk"),
        ),
    )


SCORE_FIELDS = (
    "band_tier",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "value_segment",
    "thermometer",
    "churn_risk",
    "at_risk",
)


# What a placement keeps of the stored standing: the rest of it, it computes again.
STANDING_COLUMNS = (
    CustomerScore.__table__.c.tier,
    CustomerScore.__table__.c.band_tier,
    CustomerScore.__table__.c.rfm_r,
    CustomerScore.__table__.c.rfm_f,
    CustomerScore.__table__.c.rfm_m,
    CustomerScore.__table__.c.history_id,
)


def epoch_day(moment: dt.datetime | dt.date) -> int:
    """Days since 1970-01-01 (UTC): day arithmetic that is the same SQL on every backend."""
    if isinstance(moment, dt.datetime):
        return (moment - EPOCH_MOMENT).days  # whole days, rounded down: before 1970 too
    return moment.toordinal() - EPOCH_ORDINAL


EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
EPOCH_MOMENT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class DailyActivity(Base):
    """What a customer bought and paid per day: windows of any length, as of any date,
    are sums over these rows (never over raw purchases). `day` is an epoch day;
    `customer_key` is the customer's `CustomerAggregate.key`."""

    __tablename__ = "daily_activity"

    customer_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    revenue: Mapped[Decimal] = mapped_column(ScaledDecimal(2), default=Decimal(0))
    quantity: Mapped[Decimal] = mapped_column(ScaledDecimal(3), default=Decimal(0))
    purchases: Mapped[int] = mapped_column(default=0)
    collected: Mapped[Decimal] = mapped_column(ScaledDecimal(2), default=Decimal(0))
    # The day's first and last purchase (a refund is none): the lifetime's are the
    # earliest and latest of these.
    first_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_daily_activity_day", "day", "customer_key"),)


class Touch(Base):
    """A contact with the customer (interaction, or outreach that reached them)."""

    __tablename__ = "touches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the event's own id
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(40))
    day: Mapped[int] = mapped_column(Integer)  # epoch day
    satisfaction: Mapped[int | None]

    __table_args__ = (Index("ix_touches_customer_day", "customer_id", "day"),)


class Complaint(Base):
    """A complaint's life as tiering needs it: when it opened, when (if) it closed."""

    __tablename__ = "complaints"

    complaint_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    severity: Mapped[str] = mapped_column(String(10))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None]


class ChurnModelFit(Base):
    """One fitting of the churn model on the customer base's own history, with its
    back-test: the latest row decides whether the learned risk is used (`used`) or the
    rule-based one (`reason` says why)."""

    __tablename__ = "churn_model_fits"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    fitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    horizon_days: Mapped[int]
    # The window the labels could use (the horizon, or less while history is short).
    label_days: Mapped[int | None]
    trained_on: Mapped[int]  # customers in the training set
    tested_on: Mapped[int]  # customers in the back-test
    churned_share: Mapped[float | None]  # of the back-test's customers
    auc: Mapped[float | None]
    recency_auc: Mapped[float | None]
    used: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(500))
    model: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Backtest(Base):
    """A policy applied to everyone as of a past moment, stored as a report of its own
    (current tiers untouched): its figures, and each customer's row in
    `backtest_customers`."""

    __tablename__ = "backtests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    policy_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    policy_version: Mapped[int]
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    horizon_days: Mapped[int]
    customers: Mapped[int]
    # tiers (customers and revenue share per tier) and churn (how the churn risk ranked who
    # bought again within the horizon, beside recency alone)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(100))


class BacktestCustomer(Base):
    """One customer's tier and scores in a back-test, and whether it bought again within
    the horizon (None while that later history does not exist yet)."""

    __tablename__ = "backtest_customers"

    backtest_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    rank: Mapped[int]
    value: Mapped[int] = mapped_column(BigInteger)  # the band metric, stored units
    tier: Mapped[str] = mapped_column(String(40))
    band_tier: Mapped[str] = mapped_column(String(40))
    rfm_r: Mapped[int | None]
    rfm_f: Mapped[int | None]
    rfm_m: Mapped[int | None]
    value_segment: Mapped[str | None] = mapped_column(String(20))
    thermometer: Mapped[float | None]
    churn_risk: Mapped[float | None]
    at_risk: Mapped[bool]
    bought_again: Mapped[bool | None]

    __table_args__ = (Index("ix_backtest_customers_rank", "backtest_id", "rank", "customer_key"),)


class TierPolicy(Base):
    """A versioned ranking policy; immutable once activated, exactly one active."""

    __tablename__ = "tier_policies"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="draft")  # draft|active|retired
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index(
            "uq_tier_policies_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class TierHistory(Base):
    """Every tier a customer was given, with the figures behind it, under which policy.

    A row keeps numbers, not words: the band figures, rule values and scores. The reasons
    and the `scores` people read are made from them and the policy (immutable once active)
    when the row is shown or announced (`ranking.explain_assignment`), so a first ranking of
    a million customers writes narrow rows. Rows written before revision 0005 keep their
    words in `scores_text`/`reasons_text` (and their band figures, copied from those).

    The table is also tiering's outbox for `tier.changed`: the relay publishes rows past
    the feed's cursor in id order (`feed.TierChangeFeed`). For that, every writer of this
    table holds the history lock until it commits, so rows become visible in id order (see
    service.py; a ranking's rows are visible once the ranking's row has committed).
    """

    __tablename__ = "tier_history"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_key: Mapped[int] = mapped_column(Integer)
    # The customer's assignment before this one (None for its first): with the score
    # row's `history_id`, a chain through its history that needs no index by customer.
    previous_id: Mapped[int | None] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # of its tier.changed
    previous_tier: Mapped[str | None] = mapped_column(String(40))
    tier: Mapped[str] = mapped_column(String(40))
    band_tier: Mapped[str | None] = mapped_column(String(40))
    # Written by a full ranking: its `RankingRun`, which holds what all its rows share
    # (policy, version, as_of, when written, customers, correlation id), NULL here. Read
    # them through `history_rows()`, which fills them in.
    ranking_id: Mapped[int | None] = mapped_column(BigInteger)
    policy_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    policy_version: Mapped[int | None]
    # The band: the metric over the policy's window (stored units), rank among customers.
    value: Mapped[int | None] = mapped_column(BigInteger)
    rank: Mapped[int | None]
    customers: Mapped[int | None]
    cumulative_share: Mapped[float | None]
    share_ahead: Mapped[float | None]  # what the band compared: the share of those ahead
    # A placement after events: the band edge the value was compared with (stored units),
    # and the moment of the ranking that edge comes from.
    cutoff: Mapped[int | None] = mapped_column(BigInteger)
    ranking_as_of: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Per rule of the policy: its figure (decimal text), and the rules that held.
    rule_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rules_fired: Mapped[list[Any] | None] = mapped_column(JSON)
    rfm_r: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_f: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_m: Mapped[int | None] = mapped_column(SmallInteger)
    value_segment: Mapped[str | None] = mapped_column(String(20))
    thermometer: Mapped[float | None]
    churn_risk: Mapped[float | None]
    at_risk: Mapped[bool | None]
    scores_text: Mapped[dict[str, Any] | None] = mapped_column("scores", JSON)
    reasons_text: Mapped[list[Any] | None] = mapped_column("reasons", JSON)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    as_of: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# The history as a table, for the column-wise writers and readers (ranking, feed).
TIER_HISTORY: Table = TierHistory.__table__  # type: ignore[assignment]


class RankingRun(Base):
    """A full ranking's band edges: per band of its policy, the smallest metric value
    (stored units) inside it, or None when the band was empty. Customers touched by
    events are placed against the latest one until the next ranking. Also what the
    history rows it wrote share (see `history_rows`)."""

    __tablename__ = "rankings"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    policy_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ranked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    customers: Mapped[int]
    total: Mapped[int | None] = mapped_column(BigInteger)  # the metric's, over everyone
    cutoffs: Mapped[list[Any]] = mapped_column(JSON)
    policy_version: Mapped[int | None]
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    # Tier changes it recorded: a ranking with any is kept, its history rows name it.
    changes: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (Index("ix_rankings_policy_as_of", "policy_id", "as_of"),)


RANKINGS: Table = RankingRun.__table__  # type: ignore[assignment]

# What a ranking's history rows leave to their ranking: history column, ranking column.
RANKING_SHARED = (
    ("policy_id", "policy_id"),
    ("policy_version", "policy_version"),
    ("as_of", "as_of"),
    ("changed_at", "ranked_at"),
    ("customers", "customers"),
    ("correlation_id", "correlation_id"),
)


def history_rows() -> Select[Any]:
    """`tier_history` as its readers see it: every column, those a ranking's rows leave
    to their ranking filled in from it."""
    shared = {
        name: func.coalesce(TIER_HISTORY.c[name], RANKINGS.c[source]).label(name)
        for name, source in RANKING_SHARED
    }
    return (
        select(*[shared.get(column.name, column) for column in TIER_HISTORY.columns])
        .select_from(TIER_HISTORY.outerjoin(RANKINGS, RANKINGS.c.id == TIER_HISTORY.c.ranking_id))
        # A ranking's rows are written beside it (service.apply_ranking) and exist only
        # once its own row has committed.
        .where(or_(TIER_HISTORY.c.ranking_id.is_(None), RANKINGS.c.id.is_not(None)))
    )


class FeedCursor(Base):
    """How far a table that is its own outbox has been published (the id of its last row
    acknowledged by Kafka)."""

    __tablename__ = "feed_cursors"

    feed: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
