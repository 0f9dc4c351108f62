"""The set-based re-rank: every customer ranked under a policy as of a moment, as arrays.

The database gives each customer's rows as columns (one binary COPY per table on
PostgreSQL, see shared/columnar.py); numpy computes every method over all customers at
once: sums over windows, bands, rules, RFM quintiles, value matrix, thermometer and churn
risk. No Python loop runs over customers; Python only builds the rows of customers whose
tier or scores changed. The same functions score one customer after each event, so the
re-rank and the per-event path cannot disagree.

Amounts stay in the stored integer units (fen for money, thousandths for quantities) so
sums and comparisons are exact.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    BigInteger,
    Table,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.churn import ChurnModel, current_model, learned_risk
from services.tiering.models import (
    HISTORY,
    Complaint,
    CustomerAggregate,
    CustomerScore,
    DailyActivity,
    Touch,
    epoch_day,
)
from services.tiering.schemas import PolicyDocument, Rule
from shared.columnar import (
    Col,
    Columns,
    as_uuid,
    column_rows,
    fetch_columns,
    group_sum,
    insert_columns,
    object_column,
    update_columns,
)
from shared.db import column_in
from shared.heavy import in_thread

AGGREGATES: Table = CustomerAggregate.__table__  # type: ignore[assignment]
SCORES: Table = CustomerScore.__table__  # type: ignore[assignment]
DAILY: Table = DailyActivity.__table__  # type: ignore[assignment]
TOUCHES: Table = Touch.__table__  # type: ignore[assignment]
COMPLAINTS: Table = Complaint.__table__  # type: ignore[assignment]

# Stored units per metric: money in fen (x100), quantities in thousandths (x1000).
SCALE = {"revenue": 100, "collected": 100, "quantity": 1000}
METRIC_TEXT = {
    "revenue": "revenue",
    "quantity": "quantity",
    "collected": "money collected",
    "purchase_count": "number of purchases",
    "average_daily_quantity": "average daily quantity",
    "collection_ratio": "collection ratio",
}
LEVELS = ("vendor", "partner", "strategic_alliance")
# Warmth by level code (LEVELS order); OTHER (-2) and NONE (-1) index the last two.
LEVEL_WARMTH = np.array([0.0, 0.5, 1.0, 0.0, 0.0])
SEGMENTS = ("high", "medium", "sub-medium", "low")
NONE = -1  # code of a missing text value
OTHER = -2  # code of a text value the policy does not know
NO_FIGURE = -(2**62)  # a band figure a score row does not hold (any value may be negative)
STANDING = ("value", "rank", "ahead")  # the band figures a score row keeps

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Flags = NDArray[np.bool_]


@dataclass
class RankedCustomer:
    customer_id: uuid.UUID
    key: int
    previous_tier: str | None
    tier: str
    band_tier: str
    value: Decimal
    rank: int
    customers: int
    cumulative_share: float
    # Of the metric, the share held by the customers ranked ahead: what the band compares
    # (None on rows from before it was kept).
    share_ahead: float | None = None
    rule_values: dict[str, Decimal] = field(default_factory=dict)
    rules_fired: list[int] = field(default_factory=list)
    method_scores: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ranking:
    customers: int
    per_tier: dict[str, tuple[int, int]]  # tier -> (customers, metric in stored units)
    moves: dict[tuple[str | None, str], int]
    scored: Scored
    movers: Ints  # positions of the customers whose tier changes, best rank first

    def changed_rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """The history figures of the changed customers from `start` to `stop`, best rank
        first, a mapping each (what `explain_assignment` reads): simulate's sample."""
        at = self.movers[start:stop]
        return column_rows(HISTORY, self._history_columns(at), len(at))

    @cached_property
    def movers_by_key(self) -> Ints:
        """The changed customers' positions in customer key order: history rows written
        in this order add to the end of the history's index by customer key."""
        keys = self.scored.figures.customers["key"]
        return self.movers[np.argsort(keys[self.movers], kind="stable")]

    def history_columns(self, start: int, stop: int) -> dict[str, Any]:
        """The `tier_history` figures of the changed customers from `start` to `stop` (in
        key order), as arrays (no Python object per customer: a first ranking changes
        everyone)."""
        return self._history_columns(self.movers_by_key[start:stop])

    def _history_columns(self, at: Ints) -> dict[str, Any]:
        figures, bands = self.scored.figures, self.scored.bands
        names = np.array([name.encode() for name in figures.tier_names])
        previous = figures.customers["tier"][at]
        value = bands.value[at]
        share = bands.cumulative[at] / bands.total if bands.total > 0 else np.zeros(len(at))
        ahead = bands.ahead[at] / bands.total if bands.total > 0 else np.zeros(len(at))
        columns: dict[str, Any] = {
            "customer_id": figures.customers["customer_id"][at],
            "customer_key": figures.customers["key"][at],
            "previous_tier": np.ma.masked_array(names[np.maximum(previous, 0)], previous < 0),
            **score_columns(self.scored, at),
            "value": value,
            "rank": bands.rank[at],
            "customers": figures.count,
            "cumulative_share": np.where(value > 0, share, 0.0),
            "share_ahead": np.where(value > 0, ahead, 0.0),
        }
        columns["rule_values"], columns["rules_fired"] = self._rule_columns(at)
        return columns

    def _rule_columns(self, at: Ints) -> tuple[Any, Any]:
        """Per customer, each rule's figure and the rules that held (NULL without rules)."""
        policy = self.scored.figures.policy
        if not policy.rules:
            return None, None
        sums = [rule_sums(rule, self.scored.figures) for rule in policy.rules]
        values, fired = [], []
        for i in at.tolist():
            values.append(
                {
                    rule.name: str(rule_value(rule, {n: int(c[i]) for n, c in found.items()}))
                    for rule, found in zip(policy.rules, sums, strict=True)
                }
            )
            fired.append([index for index, held in enumerate(self.scored.fired) if held[i]])
        return object_column(values), object_column(fired)


def in_units(raw: int, metric: str) -> Decimal:
    """A stored integer as the decimal people read (fen -> yuan with two places)."""
    scale = SCALE.get(metric, 1)
    places = Decimal(1).scaleb(-(len(str(scale)) - 1))
    return (Decimal(raw) / scale).quantize(places)


# ------------------------------------------------------------------ loading


def _code(column: Any, names: list[str]) -> Any:
    """A text column as its position in `names` (NONE when NULL, OTHER when unknown)."""
    return case(
        (column.is_(None), NONE),
        *[(column == name, index) for index, name in enumerate(names)],
        else_=OTHER,
    )


def _rule_columns(rule: Rule) -> tuple[str, ...]:
    return {
        "average_daily_quantity": ("quantity",),
        "collection_ratio": ("revenue", "collected"),
        "purchase_count": ("purchases",),
    }.get(rule.metric, (rule.metric,))


def _daily_columns(policy: PolicyDocument) -> list[str]:
    """The daily figures a policy reads (purchases always: they date the last purchase)."""
    names = {"purchases", policy.bands.metric}
    for rule in policy.rules:
        names.update(_rule_columns(rule))
    if policy.rfm:
        names.add("revenue")
    if policy.value_matrix:
        names.update(("revenue", "collected"))
    if policy.churn:
        names.add("revenue")  # a feature of the learned churn risk
    return sorted(names)


def _longest_window(policy: PolicyDocument) -> int:
    windows = [policy.bands.window_days] + [rule.window_days for rule in policy.rules]
    if policy.rfm:
        windows.append(policy.rfm.window_days)
    if policy.value_matrix:
        windows.append(policy.value_matrix.window_days)
    if policy.churn:
        windows.append(policy.churn.history_days)
    return max(windows)


@dataclass
class Figures:
    """Everything the methods read, one array element per customer known by `as_of`."""

    policy: PolicyDocument
    end: int  # as_of's epoch day
    # key, customer_id, level; when ranking everyone also tier, band_tier, stored scores
    customers: Columns
    tier_names: list[str]  # what the `tier` codes stand for
    daily: Columns  # at: the customer's position; day, and each daily figure
    touches: Columns  # per customer: last_touch, touches, satisfaction_sum/_count
    complaints: Columns  # per customer: open_complaints, recent_complaints
    _sums: dict[tuple[str, int, int], Ints] = field(default_factory=dict)
    _days: dict[int | None, tuple[Ints, Ints, Ints]] = field(default_factory=dict)
    churn_model: ChurnModel | None = None  # None: the rule-based churn risk
    as_of: dt.datetime | None = None

    @property
    def count(self) -> int:
        return len(self.customers["key"])

    def window_sum(self, name: str, days: int, stop: int | None = None) -> Ints:
        """Per customer, the sum of a daily figure over the last `days` days (to `stop`)."""
        start, stop = self.end - (days - 1), self.end if stop is None else stop
        if (name, start, stop) not in self._sums:
            day = self.daily["day"]
            inside = (day >= start) & (day <= stop)
            self._sums[name, start, stop] = group_sum(
                self.daily["at"][inside], self.daily[name][inside], self.count
            )
        return self._sums[name, start, stop]

    def purchase_days(self, days: int | None = None) -> tuple[Ints, Ints, Ints]:
        """Per customer over the last `days` (or all loaded) days with a purchase: the
        first and last such day (-1 when none) and how many there were."""
        if days is not None and days >= _longest_window(self.policy):
            days = None  # the loaded rows already end there
        if days not in self._days:
            bought = self.daily["purchases"] > 0
            if days is not None:
                bought &= self.daily["day"] >= self.end - (days - 1)
            at, day = self.daily["at"][bought], self.daily["day"][bought]
            first = np.full(self.count, np.iinfo(np.int64).max, dtype=np.int64)
            last = np.full(self.count, -1, dtype=np.int64)
            np.minimum.at(first, at, day)
            np.maximum.at(last, at, day)
            first[last < 0] = -1
            counted = np.bincount(at, minlength=self.count).astype(np.int64)
            self._days[days] = (first, last, counted)
        return self._days[days]


async def load_figures(
    session: AsyncSession,
    policy: PolicyDocument,
    as_of: dt.datetime,
    these: Sequence[CustomerAggregate] | None = None,
) -> Figures:
    """Read what the policy needs about everyone known by `as_of`, or about `these`
    customers (whose rows are at hand: only key, id and relationship level are taken)."""
    end = epoch_day(as_of)
    order = policy.tier_order()
    tier_names = list(order)
    if these is None:
        # Every tier name in use, so each previous tier has a code.
        tier_names += sorted(await _tiers_in_use(session) - set(order))
        customers = await _everyone(session, order, tier_names, as_of)
    else:
        customers = _these_customers(these, as_of)
    keys = customers["key"]
    only = None if these is None else keys
    daily = await _read_daily(
        session, keys, _daily_columns(policy), end - (_longest_window(policy) - 1), end, only
    )
    figures = Figures(policy, end, customers, tier_names, daily, {}, {}, as_of=as_of)
    if policy.thermometer or policy.churn:
        figures.touches = await _touch_figures(session, figures, only)
        figures.complaints = await _complaint_figures(session, figures, as_of, only)
    figures.churn_model = await current_model(session, policy)
    return figures


async def _everyone(
    session: AsyncSession, order: list[str], tier_names: list[str], as_of: dt.datetime
) -> Columns:
    """Every customer known by `as_of` and not erased: key, id, text columns as codes,
    tier and stored scores (and `scored`: whether the customer has a score row yet). The
    two tables are read apart (a join of a million rows costs more than both reads) and
    matched by key."""
    customers = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            AGGREGATES.c.customer_id,
            _code(AGGREGATES.c.relationship_level, list(LEVELS)).label("level"),
        ).where(AGGREGATES.c.first_seen_at <= as_of, AGGREGATES.c.erased.is_(False)),
        [
            Col("key", "int4", 0),
            Col("customer_id", "uuid"),
            Col("level", "int4", NONE),
        ],
    )
    stored = await fetch_columns(
        session,
        select(
            SCORES.c.key,
            _code(SCORES.c.tier, tier_names).label("tier"),
            _code(SCORES.c.band_tier, order).label("band_tier"),
            SCORES.c.rfm_r,
            SCORES.c.rfm_f,
            SCORES.c.rfm_m,
            _code(SCORES.c.value_segment, list(SEGMENTS)).label("value_segment"),
            SCORES.c.thermometer,
            SCORES.c.churn_risk,
            SCORES.c.at_risk,
            SCORES.c.value,
            SCORES.c.rank,
            SCORES.c.ahead,
            literal(True).label("scored"),
        ),
        [
            Col("key", "int4", 0),
            Col("tier", "int4", NONE),
            Col("band_tier", "int4", NONE),
            Col("rfm_r", "int4", NONE),
            Col("rfm_f", "int4", NONE),
            Col("rfm_m", "int4", NONE),
            Col("value_segment", "int4", NONE),
            Col("thermometer", "float8"),
            Col("churn_risk", "float8"),
            Col("at_risk", "bool", False),
            Col("value", "int8", NO_FIGURE),
            Col("rank", "int8", NO_FIGURE),
            Col("ahead", "int8", NO_FIGURE),
            Col("scored", "bool", False),
        ],
    )
    missing: dict[str, Any] = {
        name: NONE for name in ("tier", "band_tier", "rfm_r", "rfm_f", "rfm_m", "value_segment")
    }
    missing.update(thermometer=np.nan, churn_risk=np.nan, at_risk=False, scored=False)
    missing.update(dict.fromkeys(STANDING, NO_FIGURE))
    return {**customers, **_spread(customers["key"], stored, missing)}


def _these_customers(aggregates: Sequence[CustomerAggregate], as_of: dt.datetime) -> Columns:
    """The columns the per-customer methods read, from rows the event handlers already
    hold (no second read); customers not known by `as_of`, or erased, are left out."""
    known = [row for row in aggregates if row.first_seen_at <= as_of and not row.erased]
    levels = [row.relationship_level for row in known]
    return {
        "key": np.array([row.key for row in known], dtype=np.int32),
        "customer_id": np.frombuffer(
            b"".join(row.customer_id.bytes for row in known), dtype="V16"
        ).copy(),
        "level": np.array(
            [
                NONE if level is None else LEVELS.index(level) if level in LEVELS else OTHER
                for level in levels
            ],
            dtype=np.int32,
        ),
    }


async def _tiers_in_use(session: AsyncSession) -> set[str]:
    found = (await session.execute(select(SCORES.c.tier).distinct())).scalars()
    return {tier for tier in found if tier is not None}


async def _read_daily(
    session: AsyncSession,
    keys: NDArray[Any],
    names: list[str],
    start: int,
    end: int,
    only: NDArray[Any] | None = None,
) -> Columns:
    """The daily rows from epoch day `start` to `end` of the customers in `keys` (of all
    of them, or, with `only`, of just those keys: the table's primary key leads with it):
    `day`, each of `names`, and `at`, the row's customer position in `keys`."""
    mine = _among(session, DAILY.c.customer_key, only)
    daily = await fetch_columns(
        session,
        select(
            DAILY.c.customer_key,
            DAILY.c.day,
            *[type_coerce(DAILY.c[name], BigInteger).label(name) for name in names],
        ).where(DAILY.c.day >= start, DAILY.c.day <= end, mine),
        # NOT NULL columns: read as they are (a coalesce per value of ~7M rows costs).
        [Col("customer_key", "int4"), Col("day", "int4")] + [Col(name, "int8") for name in names],
    )
    position = _positions(keys, daily["customer_key"])
    daily["at"] = position[daily.pop("customer_key")]
    known = daily["at"] >= 0
    if not known.all():  # (a copy of every column only when some rows are not wanted)
        daily = {name: values[known] for name, values in daily.items()}
    # One integer type throughout: numpy's grouped min/max (ufunc.at) is many times
    # slower when the values' type differs from the result's.
    return {name: values.astype(np.int64, copy=False) for name, values in daily.items()}


def _positions(keys: NDArray[Any], *others: NDArray[Any]) -> Ints:
    """A lookup from customer key to position in `keys` (-1 for keys not among them)."""
    largest = max([int(k.max()) for k in (keys, *others) if k.size] + [0])
    position = np.full(largest + 1, -1, dtype=np.int64)
    position[keys] = np.arange(len(keys))
    return position


def _contact_window(policy: PolicyDocument) -> int:
    """Days of contacts and complaints the thermometer (and churn's silence) look at."""
    return policy.thermometer.window_days if policy.thermometer else 180


def thermometer_start(policy: PolicyDocument, as_of: dt.datetime) -> dt.datetime:
    return as_of - dt.timedelta(days=_contact_window(policy))


def _spread(keys: NDArray[Any], found: Columns, defaults: dict[str, Any]) -> Columns:
    """Per-customer arrays (in the order of `keys`) from rows keyed by customer key;
    customers without a row get the default."""
    position = _positions(keys, found["key"])[found["key"]]
    mine = position >= 0
    spread: Columns = {}
    for name, default in defaults.items():
        values = np.full(len(keys), default, dtype=found[name].dtype)
        values[position[mine]] = found[name][mine]
        spread[name] = values
    return spread


def _scatter(figures: Figures, found: Columns, defaults: dict[str, int]) -> Columns:
    """Per-customer figures from grouped rows keyed by customer key (0 or none when
    the customer has no row)."""
    return {
        name: values.astype(np.int64)
        for name, values in _spread(figures.customers["key"], found, defaults).items()
    }


def _among(session: AsyncSession, column: Any, keys: NDArray[Any] | None) -> Any:
    """`column` among `keys` (true for everyone when `keys` is None)."""
    if keys is None:
        return literal(True)
    return column_in(column, keys.tolist(), session.get_bind().dialect.name)


async def _touch_figures(
    session: AsyncSession, figures: Figures, only: NDArray[Any] | None
) -> Columns:
    recent = TOUCHES.c.day >= figures.end - (_contact_window(figures.policy) - 1)
    one = _among(session, AGGREGATES.c.key, only)
    found = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            func.max(TOUCHES.c.day).label("last_touch"),
            func.count(case((recent, TOUCHES.c.id))).label("touches"),
            func.sum(case((recent, TOUCHES.c.satisfaction))).label("satisfaction_sum"),
            func.count(case((recent, TOUCHES.c.satisfaction))).label("satisfaction_count"),
        )
        .select_from(TOUCHES.join(AGGREGATES, AGGREGATES.c.customer_id == TOUCHES.c.customer_id))
        .where(TOUCHES.c.day <= figures.end, one)
        .group_by(AGGREGATES.c.key),
        [
            Col("key", "int4", 0),
            Col("last_touch", "int4", NONE),
            Col("touches", "int8", 0),
            Col("satisfaction_sum", "int8", 0),
            Col("satisfaction_count", "int8", 0),
        ],
    )
    return _scatter(
        figures,
        found,
        {"last_touch": NONE, "touches": 0, "satisfaction_sum": 0, "satisfaction_count": 0},
    )


async def _complaint_figures(
    session: AsyncSession, figures: Figures, as_of: dt.datetime, only: NDArray[Any] | None
) -> Columns:
    is_open = or_(COMPLAINTS.c.closed_at.is_(None), COMPLAINTS.c.closed_at > as_of)
    recent = COMPLAINTS.c.opened_at >= thermometer_start(figures.policy, as_of)
    one = _among(session, AGGREGATES.c.key, only)
    found = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            func.count(case((is_open, COMPLAINTS.c.complaint_id))).label("open_complaints"),
            func.count(case((recent, COMPLAINTS.c.complaint_id))).label("recent_complaints"),
        )
        .select_from(
            COMPLAINTS.join(AGGREGATES, AGGREGATES.c.customer_id == COMPLAINTS.c.customer_id)
        )
        .where(COMPLAINTS.c.opened_at <= as_of, one)
        .group_by(AGGREGATES.c.key),
        [
            Col("key", "int4", 0),
            Col("open_complaints", "int8", 0),
            Col("recent_complaints", "int8", 0),
        ],
    )
    return _scatter(figures, found, {"open_complaints": 0, "recent_complaints": 0})


# ------------------------------------------------------------------ the methods


OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _compare(left: Ints, op: str, right: Fraction) -> Flags:
    """`left op right` for integers against an exact fraction, without rounding."""
    scaled = left.astype(object) if abs(right.denominator) > 2**20 else left
    return np.asarray(OPS[op](scaled * right.denominator, right.numerator), dtype=np.bool_)


def _share_holds(part: Ints, whole: Ints, op: str, ratio: Fraction) -> Flags:
    """Where `part op whole * ratio` with `whole` > 0, exactly: part * q op whole * p
    for ratio p/q, in Python integers (no overflow)."""
    held = OPS[op](part.astype(object) * ratio.denominator, whole.astype(object) * ratio.numerator)
    return np.asarray(held, dtype=np.bool_) & (whole > 0)


def rule_sums(rule: Rule, figures: Figures) -> dict[str, Ints]:
    return {name: figures.window_sum(name, rule.window_days) for name in _rule_columns(rule)}


def rule_holds(rule: Rule, sums: dict[str, Ints]) -> Flags:
    """Where `metric op value` holds, exactly (integers against the exact threshold)."""
    threshold = Fraction(rule.value)
    if rule.metric == "average_daily_quantity":
        days = Fraction(rule.window_days, 30) * rule.working_days_per_month
        return _compare(sums["quantity"], rule.op, threshold * 1000 * days)
    if rule.metric == "collection_ratio":
        return _share_holds(sums["collected"], sums["revenue"], rule.op, threshold)
    if rule.metric == "purchase_count":
        return _compare(sums["purchases"], rule.op, threshold)
    return _compare(sums[rule.metric], rule.op, threshold * SCALE[rule.metric])


def rule_value(rule: Rule, sums: dict[str, int]) -> Decimal:
    """The figure a rule looked at, in people's units (for reasons and scores)."""
    if rule.metric == "average_daily_quantity":
        days = Decimal(rule.window_days) / 30 * rule.working_days_per_month
        return (Decimal(sums["quantity"]) / 1000 / days).quantize(Decimal("0.01"))
    if rule.metric == "collection_ratio":
        revenue = sums["revenue"]
        return (
            (Decimal(sums["collected"]) / revenue).quantize(Decimal("0.001"))
            if revenue > 0
            else Decimal(0)
        )
    if rule.metric == "purchase_count":
        return Decimal(sums["purchases"])
    return in_units(sums[rule.metric], rule.metric)


@dataclass
class Bands:
    """Where each customer falls in the share bands (0 = best band)."""

    value: Ints  # the metric over the window
    band: Ints
    rank: Ints  # 1 = largest; ties share a rank
    cumulative: Ints  # the metric of everyone ranked at or above
    ahead: Ints  # the metric of everyone ranked strictly above: what the band compares
    total: int


def share_bands(figures: Figures) -> Bands:
    bands = figures.policy.bands
    value = figures.window_sum(bands.metric, bands.window_days)
    positive = np.maximum(value, 0)
    ascending, below, below_or_equal = _tie_ranks(positive)
    before = np.concatenate(([0], np.cumsum(ascending)))
    total = int(before[-1])
    count = len(positive)
    above = total - before[below_or_equal]  # the metric of those strictly ahead
    rank = 1 + (count - below_or_equal)
    band = np.full(count, len(bands.tiers), dtype=np.int64)
    shares = np.cumsum([tier.share for tier in bands.tiers])
    for index in reversed(range(len(bands.tiers))):
        if bands.method == "cumulative_share":
            inside = above < total * shares[index]
        else:
            inside = (rank - 1) < count * shares[index]
        band[(positive > 0) & inside] = index
    return Bands(value, band, rank, total - before[below], above, total)


def apply_rule_flags(band: Ints, fired: list[Flags], policy: PolicyDocument) -> Ints:
    """Each rule in order lifts (min_tier) or caps (max_tier) the tier where it holds."""
    order = policy.tier_order()
    tier = band.copy()
    for rule, holds in zip(policy.rules, fired, strict=True):
        target = order.index(rule.min_tier or rule.max_tier or "")
        moves = holds & ((tier > target) if rule.min_tier is not None else (tier < target))
        tier[moves] = target
    return tier


def _tie_ranks(values: Ints) -> tuple[Ints, Ints, Ints]:
    """The values in ascending order, and per value how many are smaller and how many are
    smaller or equal (ties share both): one sort, where a binary search of every value in
    the sorted array took five times as long over a million customers."""
    order = np.argsort(values, kind="stable")
    ascending = values[order]
    count = len(values)
    starts_group = np.ones(count, dtype=np.bool_)
    starts_group[1:] = ascending[1:] != ascending[:-1]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], count)
    below = np.empty(count, dtype=np.int64)
    below[order] = starts[group]
    below_or_equal = np.empty(count, dtype=np.int64)
    below_or_equal[order] = ends[group]
    return ascending, below, below_or_equal


def _quintile(values: Ints) -> Ints:
    """1-5 by rank over everyone, ties sharing the lower rank (5 = largest)."""
    _, rank, _ = _tie_ranks(values)  # rank - 1
    return (1 + (5 * rank) // max(len(values), 1)).astype(np.int64)


def _clamp(values: Floats) -> Floats:
    return np.clip(values, 0.0, 1.0)


def _per(numerator: NDArray[Any], denominator: NDArray[Any]) -> Floats:
    """numerator / denominator where the denominator is not 0 (0 elsewhere)."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def customer_scores(figures: Figures) -> dict[str, NDArray[Any]]:
    """The scores that depend only on each customer's own history: value segment (code),
    thermometer, churn risk (NaN without a purchase) and the at-risk flag."""
    policy, end, count = figures.policy, figures.end, figures.count
    found: dict[str, NDArray[Any]] = {
        "value_segment": np.full(count, NONE, dtype=np.int64),
        "thermometer": np.full(count, np.nan),
        "churn_risk": np.full(count, np.nan),
        "at_risk": np.zeros(count, dtype=np.bool_),
    }
    if policy.value_matrix:
        matrix = policy.value_matrix
        revenue = figures.window_sum("revenue", matrix.window_days)
        collected = figures.window_sum("collected", matrix.window_days)
        sales_high = revenue >= int(matrix.sales_threshold * 100)
        pays = _share_holds(collected, revenue, ">=", Fraction(str(matrix.collection_threshold)))
        found["value_segment"] = np.select(
            [sales_high & pays, sales_high, pays], [0, 1, 2], default=3
        ).astype(np.int64)
    touches, complaints = figures.touches, figures.complaints
    if policy.thermometer:
        thermo = policy.thermometer
        touched = touches["last_touch"] >= 0
        recency = np.where(
            touched, _clamp(1 - (end - touches["last_touch"]) / thermo.window_days), 0.0
        )
        frequency = _clamp(touches["touches"] / thermo.touches_for_full_frequency)
        satisfaction = np.where(
            touches["satisfaction_count"] > 0,
            (_per(touches["satisfaction_sum"], touches["satisfaction_count"]) - 1) / 4,
            0.5,
        )
        calm = _clamp(
            1 - complaints["open_complaints"] * 0.5 - complaints["recent_complaints"] * 0.1
        )
        level = LEVEL_WARMTH[figures.customers["level"]]
        found["thermometer"] = (
            25 * recency + 25 * frequency + 20 * satisfaction + 15 * calm + 15 * level
        )
    if policy.churn:
        churn = policy.churn
        _, last_day, _ = figures.purchase_days()
        first, _, days_bought = figures.purchase_days(churn.history_days)
        bought = last_day >= 0
        recency = (end - last_day).astype(np.float64)
        # The usual cycle: days between the first and last purchase over the purchases.
        has_cycle = days_bought >= 2
        cycle = _per(last_day - first, np.where(has_cycle, days_bought - 1, 0))
        # How many usual cycles overdue, as x / (1 + x): 0 when on time, 0.5 one cycle
        # late, approaching 1 but never flat, so the long-gone still rank above the late.
        late = np.where(has_cycle, _per(recency, cycle) - 1, recency / 90)
        overdue = np.where(late > 0, late / (1 + np.maximum(late, 0)), 0.0)
        recent = figures.window_sum("purchases", churn.recent_days)
        past = figures.window_sum("purchases", churn.history_days, stop=end - churn.recent_days)
        past_rate = past * churn.recent_days / max(churn.history_days - churn.recent_days, 1)
        drop = np.where(past_rate > 0, _clamp(1 - _per(recent, past_rate)), 0.0)
        complaint_share = _clamp(complaints["open_complaints"] / 2.0)
        last_contact = np.maximum(last_day, touches["last_touch"])
        silence = _clamp((end - last_contact - churn.silence_days) / 180)
        risk = (
            churn.weight_rate_drop * drop
            + churn.weight_overdue * overdue
            + churn.weight_complaints * complaint_share
            + churn.weight_silence * silence
        )
        if figures.churn_model is not None:
            risk, _ = learned_risk(figures, figures.churn_model)
        # Kept at the precision shown (three places): a daily re-rank then rewrites only
        # the customers whose shown risk moved, and the flag agrees with the figure.
        risk = np.round(risk, 3)
        found["churn_risk"] = np.where(bought, risk, np.nan)
        found["at_risk"] = bought & (risk >= churn.threshold)
    return found


@dataclass
class Scored:
    """A policy applied to everyone: bands, rules, final tier (codes in tier order), and
    every score."""

    figures: Figures
    bands: Bands
    fired: list[Flags]
    tier: Ints
    scores: dict[str, NDArray[Any]]


def score_everyone(figures: Figures) -> Scored:
    policy = figures.policy
    bands = share_bands(figures)
    fired = [rule_holds(rule, rule_sums(rule, figures)) for rule in policy.rules]
    scores = customer_scores(figures)
    for name in ("rfm_r", "rfm_f", "rfm_m"):
        scores[name] = np.full(figures.count, NONE, dtype=np.int64)
    if policy.rfm:
        # Recency ranks every customer by the last purchase day (none = least recent).
        _, any_last_day, _ = figures.purchase_days()
        scores["rfm_r"] = _quintile(np.where(any_last_day >= 0, any_last_day, -(10**7)))
        scores["rfm_f"] = _quintile(figures.window_sum("purchases", policy.rfm.window_days))
        scores["rfm_m"] = _quintile(figures.window_sum("revenue", policy.rfm.window_days))
    return Scored(figures, bands, fired, apply_rule_flags(bands.band, fired, policy), scores)


# ------------------------------------------------------------------ re-rank


async def rank(
    session: AsyncSession,
    policy: PolicyDocument,
    as_of: dt.datetime,
    *,
    store_scores: bool = False,
) -> Ranking:
    """Rank everyone known by `as_of`; return figures per tier, moves, and the changed
    customers. With `store_scores`, write every customer's band and scores where they
    changed."""
    figures = await load_figures(session, policy, as_of)
    ranking = await in_thread(_rank_loaded, figures)
    if store_scores:
        await _store_scores(session, ranking.scored)
    return ranking


def _rank_loaded(figures: Figures) -> Ranking:
    """The numpy half of `rank`, run off the event loop."""
    policy = figures.policy
    scored = score_everyone(figures)
    order = policy.tier_order()
    previous = figures.customers["tier"]
    changed = previous != scored.tier
    count = figures.count
    per_tier_count = np.bincount(scored.tier, minlength=len(order))
    per_tier_volume = group_sum(scored.tier, np.maximum(scored.bands.value, 0), len(order))
    per_tier = {
        name: (int(per_tier_count[i]), int(per_tier_volume[i]))
        for i, name in enumerate(order)
        if per_tier_count[i]
    }
    names = figures.tier_names
    moves: dict[tuple[str | None, str], int] = {}
    if changed.any():
        pairs, pair_counts = np.unique(
            np.stack([previous[changed], scored.tier[changed]]), axis=1, return_counts=True
        )
        moves = {
            (names[before] if before >= 0 else None, order[after]): int(n)
            for (before, after), n in zip(pairs.T.tolist(), pair_counts.tolist(), strict=True)
        }
    movers = np.flatnonzero(changed)
    movers = movers[np.lexsort((figures.customers["key"][movers], scored.bands.rank[movers]))]
    return Ranking(customers=count, per_tier=per_tier, moves=moves, scored=scored, movers=movers)


SCORE_COLUMNS = ("rfm_r", "rfm_f", "rfm_m", "value_segment", "thermometer", "churn_risk")


def _same(stored: NDArray[Any], new: NDArray[Any]) -> Flags:
    if stored.dtype.kind == "f":
        return np.asarray((stored == new) | (np.isnan(stored) & np.isnan(new)), dtype=np.bool_)
    return np.asarray(stored == new, dtype=np.bool_)


async def _store_scores(session: AsyncSession, scored: Scored) -> None:
    """Write each customer's tier, band and scores where they changed (a first row for
    customers that have none)."""
    updates, inserts = await in_thread(_score_changes, scored)
    for columns, existing in ((updates, True), (inserts, False)):
        count = len(columns["key"]) if columns else 0
        if not count:
            continue
        if existing:
            await update_columns(session, SCORES, "key", columns, count)
        else:
            await insert_columns(session, SCORES, columns, count)


def _score_changes(scored: Scored) -> tuple[dict[str, Any], dict[str, Any]]:
    """The score rows to update and to insert, as columns (empty when none)."""
    stored = scored.figures.customers
    bands = scored.bands
    new = {**scored.scores, "band_tier": bands.band}
    standing = {"value": bands.value, "rank": bands.rank, "ahead": bands.ahead}
    # Stored tiers are codes among every tier name in use; the new ones in the policy's
    # order, which those names start with: the codes compare as they are.
    same = stored["tier"] == scored.tier
    for name in (*SCORE_COLUMNS, "band_tier", "at_risk"):
        same &= _same(stored[name], new[name])
    for name in STANDING:
        same &= stored[name] == standing[name]
    differ = np.flatnonzero(~same)
    has_row = stored["scored"][differ]
    found: list[dict[str, Any]] = []
    for at in (differ[has_row], differ[~has_row]):
        columns = {
            "key": stored["key"][at],
            **score_columns(scored, at),
            **{name: figure[at] for name, figure in standing.items()},
            "scored_at": scored.figures.as_of,
        }
        found.append(columns if at.size else {})
    return found[0], found[1]


def score_columns(scored: Scored, at: Ints) -> dict[str, Any]:
    """Tier, band and scores of the customers at positions `at`, as the score and history
    tables store them: arrays, NULLs masked."""
    found = scored.scores
    # The policy's tiers come first among the names, so one list names both codes.
    names = np.array([name.encode() for name in scored.figures.tier_names])
    segments = np.array([name.encode() for name in SEGMENTS])
    segment = found["value_segment"][at]
    columns: dict[str, Any] = {
        "tier": names[scored.tier[at]],
        "band_tier": names[scored.bands.band[at]],
        "value_segment": np.ma.masked_array(segments[np.maximum(segment, 0)], segment < 0),
        "thermometer": found["thermometer"][at],
        "churn_risk": found["churn_risk"][at],
        "at_risk": found["at_risk"][at],
    }
    for name in ("rfm_r", "rfm_f", "rfm_m"):
        columns[name] = np.ma.masked_array(found[name][at], found[name][at] < 0)
    return columns


def _stored_scores(found: dict[str, NDArray[Any]], at: NDArray[Any]) -> dict[str, list[Any]]:
    """The scores of the customers at positions `at` as the aggregate columns store them
    (None where a score is missing): one list per column."""
    values: dict[str, list[Any]] = {}
    for name in ("rfm_r", "rfm_f", "rfm_m"):
        codes = found[name][at].tolist() if name in found else [NONE] * len(at)
        values[name] = [None if code < 0 else code for code in codes]
    values["value_segment"] = [
        None if code < 0 else SEGMENTS[code] for code in found["value_segment"][at].tolist()
    ]
    for name in ("thermometer", "churn_risk"):
        values[name] = [None if math.isnan(value) else value for value in found[name][at].tolist()]
    values["at_risk"] = found["at_risk"][at].tolist()
    return values


THERMOMETER_LEVELS = ((75, "ally"), (50, "trusted"), (25, "familiar"), (0, "stranger"))


def method_scores(row: Any) -> dict[str, Any]:
    """RFM, value segment, thermometer and churn as people read them (from stored columns
    or a ranking row)."""
    found: dict[str, Any] = {}
    if row["rfm_r"] is not None:
        r, f, m = (int(row[name]) for name in ("rfm_r", "rfm_f", "rfm_m"))
        found["rfm"] = {"recency": r, "frequency": f, "monetary": m, "code": f"{r}{f}{m}"}
    if row["value_segment"] is not None:
        found["value_matrix"] = f"{row['value_segment']} value"
    if row["thermometer"] is not None:
        warmth = round(float(row["thermometer"]))
        level = next(name for floor, name in THERMOMETER_LEVELS if warmth >= floor)
        found["thermometer"] = {"score": warmth, "level": level}
    if row["churn_risk"] is not None:
        found["churn"] = {
            "risk": round(float(row["churn_risk"]), 3),
            "at_risk": bool(row["at_risk"]),
        }
    return found


def _percent(value: float) -> str:
    """A share as a person reads it: whole percent, or one decimal below 10%."""
    percent = value * 100
    if percent < 10:
        return f"{math.ceil(percent * 10) / 10:g}%"
    return f"{math.ceil(percent):d}%"


def _share_percent(value: float) -> str:
    """A share held, to a tenth of a percent, rounded down: 0.9929 is 99.2%, never 100%."""
    return f"{math.floor(round(value * 1000, 6)) / 10:g}%"


def explain(customer: RankedCustomer, policy: PolicyDocument) -> list[str]:
    """Reasons a person can read, in the order they were applied."""
    bands = policy.bands
    metric = METRIC_TEXT[bands.metric]
    window = f"over the last {bands.window_days} days"
    reasons: list[str] = []
    if customer.value <= 0:
        reasons.append(f"{customer.band_tier}: no {metric} {window}")
    elif bands.method == "cumulative_share" and customer.share_ahead is not None:
        reasons.append(_share_reason(customer, policy))
    elif customer.band_tier == bands.rest:
        covered = _percent(sum(tier.share for tier in bands.tiers))
        basis = "customers" if bands.method == "top_share" else f"the {metric}"
        reasons.append(
            f"{customer.band_tier}: {metric} of {customer.value} {window} is outside the "
            f"top {covered} of {basis} (rank {customer.rank} of {customer.customers})"
        )
    else:
        top = _percent(customer.rank / customer.customers)
        if bands.method == "cumulative_share":
            reasons.append(
                f"{customer.band_tier}: in the top {top} of customers by {metric} {window} "
                f"(cumulative share {_share_percent(customer.cumulative_share)})"
            )
        else:
            reasons.append(
                f"{customer.band_tier}: in the top {top} of customers by {metric} {window} "
                f"(rank {customer.rank} of {customer.customers})"
            )
    reasons += rule_reasons(customer.band_tier, customer.rules_fired, customer.rule_values, policy)
    return reasons


def _share_reason(customer: RankedCustomer, policy: PolicyDocument) -> str:
    """The band of a cumulative-share policy in the figures it compared: the share held
    by those ranked ahead against the share where the band ends."""
    bands = policy.bands
    metric = METRIC_TEXT[bands.metric]
    names = [tier.name for tier in bands.tiers]
    tier = customer.band_tier
    inside = names.index(tier) + 1 if tier in names else len(names)
    end = f"{round(sum(band.share for band in bands.tiers[:inside]) * 100, 1):g}%"
    edge = (
        f"under the {end} where {tier} ends"
        if tier in names
        else (f"not under the {end} where the bands end")
    )
    return (
        f"{tier}: {metric} of {customer.value} over the last {bands.window_days} days; the "
        f"customers ranked ahead hold {_share_percent(customer.share_ahead or 0.0)} of the "
        f"{metric}, {edge} (rank {customer.rank} of {customer.customers})"
    )


def _rule_moves(
    band_tier: str, fired: list[int], policy: PolicyDocument
) -> Iterator[tuple[Rule, str, bool]]:
    """The rules that hold and move the tier, applied in order from the band (as
    `apply_rule_flags` does over arrays): each as (rule, the tier it gives, whether it
    lifted)."""
    order = policy.tier_names
    current = order.index(band_tier)
    for index in fired:
        rule = policy.rules[index]
        target = order.index(rule.min_tier or rule.max_tier or "")
        lifts = rule.min_tier is not None and current > target
        caps = rule.max_tier is not None and current < target
        if lifts or caps:
            current = target
            yield rule, order[target], lifts


def rule_reasons(
    band_tier: str, fired: list[int], values: dict[str, Decimal], policy: PolicyDocument
) -> list[str]:
    """One reason per rule that moved the tier, applied in order from the band."""
    reasons: list[str] = []
    for rule, tier, lifted in _rule_moves(band_tier, fired, policy):
        figure = values[rule.name]
        detail = f"{METRIC_TEXT[rule.metric]} over the last {rule.window_days} days is {figure}"
        if rule.metric == "average_daily_quantity":
            detail += f", counting {rule.working_days_per_month} working days a month"
        verb = "lifted to" if lifted else "capped at"
        reasons.append(f"{verb} {tier} by rule '{rule.name}': {detail} ({rule.op} {rule.value})")
    return reasons


def apply_rules(band_tier: str, fired: list[int], policy: PolicyDocument) -> str:
    """The tier after the rules that hold, in order."""
    moves = list(_rule_moves(band_tier, fired, policy))
    return moves[-1][1] if moves else band_tier


def band_cutoffs(bands: Bands, band_count: int) -> list[int | None]:
    """Per band, the smallest metric value inside it (None for an empty band): where a
    customer touched by events is placed until the next ranking."""
    cutoffs: list[int | None] = []
    for index in range(band_count):
        inside = bands.value[(bands.band == index) & (bands.value > 0)]
        cutoffs.append(int(inside.min()) if inside.size else None)
    return cutoffs


@dataclass(frozen=True)
class Placement:
    """The band edges of the latest full ranking, and its moment."""

    cutoffs: list[int | None]
    as_of: dt.datetime

    def band_of(self, value: int, policy: PolicyDocument) -> tuple[str, int | None]:
        """The band a metric value falls in, and the edge it was compared with (for the
        rest, the lowest band's)."""
        names = [tier.name for tier in policy.bands.tiers]
        if value > 0:
            for name, cutoff in zip(names, self.cutoffs, strict=False):
                if cutoff is not None and value >= cutoff:
                    return name, cutoff
        lowest = next((cutoff for cutoff in reversed(self.cutoffs) if cutoff is not None), None)
        return policy.bands.rest, lowest


@dataclass
class Reassessment:
    """One customer's rule outcome and per-customer scores, between two re-ranks; with a
    placement, also its band, metric value and the cut-off it was compared with."""

    tier: str | None
    fired: list[int]
    rule_values: dict[str, Decimal]
    scores: dict[str, Any]
    band_tier: str | None = None
    value: int | None = None
    cutoff: int | None = None


async def reassess(
    session: AsyncSession,
    policy: PolicyDocument,
    customers: Sequence[tuple[CustomerAggregate, str | None]],
    as_of: dt.datetime,
    placement: Placement | None = None,
) -> dict[uuid.UUID, Reassessment]:
    """Rules and the scores that depend only on the customer (value matrix, thermometer,
    churn) for these customers, by the re-rank's own functions over all of them at once;
    each in the band `placement` puts its metric value in (without one, the band it
    has). Customers not known by `as_of` are left out."""
    figures = await load_figures(session, policy, as_of, [row for row, _ in customers])
    bands = {row.key: band for row, band in customers}
    values = figures.window_sum(policy.bands.metric, policy.bands.window_days)
    sums = [rule_sums(rule, figures) for rule in policy.rules]
    holds = [rule_holds(rule, found) for rule, found in zip(policy.rules, sums, strict=True)]
    found_scores = customer_scores(figures)
    stored = _stored_scores(found_scores, np.arange(figures.count))
    outcomes: dict[uuid.UUID, Reassessment] = {}
    for i, key in enumerate(figures.customers["key"].tolist()):
        fired = [index for index, held in enumerate(holds) if held[i]]
        rule_figures = {
            rule.name: rule_value(rule, {name: int(column[i]) for name, column in found.items()})
            for rule, found in zip(policy.rules, sums, strict=True)
        }
        band_tier, cutoff, value = bands[key], None, None
        if placement is not None:
            value = int(values[i])
            band_tier, cutoff = placement.band_of(value, policy)
        outcomes[as_uuid(figures.customers["customer_id"][i])] = Reassessment(
            tier=apply_rules(band_tier, fired, policy) if band_tier is not None else None,
            fired=fired,
            rule_values=rule_figures,
            scores={
                name: stored[name][i]
                for name in ("value_segment", "thermometer", "churn_risk", "at_risk")
            },
            band_tier=band_tier,
            value=value,
            cutoff=cutoff,
        )
    return outcomes


def explain_assignment(
    row: Mapping[Any, Any], policy: PolicyDocument
) -> tuple[dict[str, Any], list[str]]:
    """The scores and reasons people read for a `tier_history` row, made from its figures
    under its policy (rows from before revision 0005 keep their own words)."""
    if row.get("reasons") is not None:
        return dict(row["scores"] or {}), list(row["reasons"])
    rule_values = {name: Decimal(value) for name, value in (row["rule_values"] or {}).items()}
    fired = list(row["rules_fired"] or [])
    if row.get("ranking_as_of") is not None:  # placed against a ranking's band edges
        return _explain_placement(row, rule_values, fired, policy)
    if row["value"] is None:  # a change after events with no assignment to take a band from
        figures = {
            "band_tier": row["band_tier"],
            "rules": {name: str(value) for name, value in rule_values.items()},
            **method_scores(row),
        }
        return figures, rule_reasons(row["band_tier"], fired, rule_values, policy)
    customer = RankedCustomer(
        customer_id=row["customer_id"],
        key=row["customer_key"],
        previous_tier=row["previous_tier"],
        tier=row["tier"],
        band_tier=row["band_tier"],
        value=in_units(row["value"], policy.bands.metric),
        rank=row["rank"],
        customers=row["customers"],
        cumulative_share=row["cumulative_share"],
        share_ahead=row.get("share_ahead"),
        rule_values=rule_values,
        rules_fired=fired,
        method_scores=method_scores(row),
    )
    return scores(customer, policy), explain(customer, policy)


def _explain_placement(
    row: Mapping[Any, Any],
    rule_values: dict[str, Decimal],
    fired: list[int],
    policy: PolicyDocument,
) -> tuple[dict[str, Any], list[str]]:
    """A band given after events: the value against the edge of the latest ranking."""
    bands = policy.bands
    metric, band = METRIC_TEXT[bands.metric], row["band_tier"]
    value = in_units(row["value"], bands.metric)
    cutoff = None if row["cutoff"] is None else in_units(row["cutoff"], bands.metric)
    ranking = f"the ranking of {row['ranking_as_of']:%Y-%m-%d %H:%M} UTC"
    window = f"over the last {bands.window_days} days"
    if row["value"] <= 0:
        reason = f"{band}: no {metric} {window}"
    elif band == bands.rest:
        reason = (
            f"{band}: {metric} of {value} {window} is below every band's cut-off (the "
            f"lowest is {cutoff}) of {ranking}"
            if cutoff is not None
            else f"{band}: {metric} of {value} {window}; {ranking} had no customer in a band"
        )
    else:
        reason = (
            f"{band}: {metric} of {value} {window} is at or above the {band} cut-off {cutoff} "
            f"of {ranking}"
        )
    figures = {
        "metric": bands.metric,
        "window_days": bands.window_days,
        "value": str(value),
        "cutoff": None if cutoff is None else str(cutoff),
        "ranking_as_of": row["ranking_as_of"].isoformat(),
        "band_tier": band,
        "rules": {name: str(figure) for name, figure in rule_values.items()},
        **method_scores(row),
    }
    return figures, [reason, *rule_reasons(band, fired, rule_values, policy)]


def scores(customer: RankedCustomer, policy: PolicyDocument) -> dict[str, Any]:
    return {
        "metric": policy.bands.metric,
        "window_days": policy.bands.window_days,
        "value": str(customer.value),
        "rank": customer.rank,
        "customers": customer.customers,
        "cumulative_share": round(customer.cumulative_share, 4),
        **(
            {"share_ahead": round(customer.share_ahead, 4)}
            if customer.share_ahead is not None
            else {}
        ),
        "band_tier": customer.band_tier,
        "rules": {name: str(value) for name, value in customer.rule_values.items()},
        **customer.method_scores,
    }


async def summary_figures(
    session: AsyncSession, window_days: int, as_of: dt.datetime
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    """Per current tier: (customers, revenue, collected) over the window, in stored units,
    erased customers left out;
    the total revenue; and the revenue of the top 20% of customers by revenue."""
    end = epoch_day(as_of)
    names = sorted(await _tiers_in_use(session))
    customers = await fetch_columns(
        session,
        select(AGGREGATES.c.key).where(
            AGGREGATES.c.first_seen_at <= as_of, AGGREGATES.c.erased.is_(False)
        ),
        [Col("key", "int4", 0)],
    )
    tiers_now = await fetch_columns(
        session,
        select(SCORES.c.key, _code(SCORES.c.tier, names).label("tier")),
        [Col("key", "int4", 0), Col("tier", "int4", NONE)],
    )
    customers.update(_spread(customers["key"], tiers_now, {"tier": NONE}))
    daily = await _read_daily(
        session, customers["key"], ["collected", "revenue"], end - (window_days - 1), end
    )
    return await in_thread(_summarise, names, customers, daily)


def _summarise(
    names: list[str], customers: Columns, daily: Columns
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    count = len(customers["key"])
    revenue = group_sum(daily["at"], daily["revenue"], count)
    collected = group_sum(daily["at"], daily["collected"], count)
    codes, tier_of = np.unique(customers["tier"], return_inverse=True)
    tiers = {
        (names[code] if code >= 0 else None): (
            int(np.count_nonzero(tier_of == index)),
            int(revenue[tier_of == index].sum()),
            int(collected[tier_of == index].sum()),
        )
        for index, code in enumerate(codes.tolist())
    }
    top = np.sort(np.maximum(revenue, 0))[::-1][: -(-count // 5)]
    return tiers, int(revenue.sum()), int(top.sum())
