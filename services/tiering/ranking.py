"""The set-based re-rank: one SQL statement ranks every customer under a policy as of a
moment, from the daily aggregates; Python only touches the customers whose tier changes.

Amounts stay in the stored integer units inside SQL (fen for money, thousandths for
quantities) so sums and comparisons are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Table, and_, case, func, literal, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.tiering.models import CustomerAggregate, DailyActivity
from services.tiering.schemas import PolicyDocument, Rule

AGGREGATES: Table = CustomerAggregate.__table__  # type: ignore[assignment]
DAILY: Table = DailyActivity.__table__  # type: ignore[assignment]

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


@dataclass
class RankedCustomer:
    customer_id: uuid.UUID
    previous_tier: str | None
    tier: str
    band_tier: str
    value: Decimal
    rank: int
    customers: int
    cumulative_share: float
    rule_values: dict[str, Decimal] = field(default_factory=dict)
    rules_fired: list[int] = field(default_factory=list)


@dataclass
class Ranking:
    customers: int
    per_tier: dict[str, tuple[int, int]]  # tier -> (customers, metric in stored units)
    moves: dict[tuple[str | None, str], int]
    changed: list[RankedCustomer]


def in_units(raw: int, metric: str) -> Decimal:
    """A stored integer as the decimal people read (fen -> yuan with two places)."""
    scale = SCALE.get(metric, 1)
    places = Decimal(1).scaleb(-(len(str(scale)) - 1))
    return (Decimal(raw) / scale).quantize(places)


def _raw(column: Any) -> ColumnElement[Any]:
    return type_coerce(column, BigInteger)


def _window_sum(column_name: str, start: dt.date) -> ColumnElement[Any]:
    column = _raw(DAILY.c[column_name])
    return func.coalesce(func.sum(case((DAILY.c.day >= start, column), else_=0)), 0)


def _rule_condition(rule: Rule, values: dict[str, ColumnElement[Any]]) -> ColumnElement[bool]:
    """`metric op value`, written without division so it stays exact in integer units."""
    threshold = Decimal(rule.value)
    months = Decimal(rule.window_days) / 30
    if rule.metric == "average_daily_quantity":
        left = values["quantity"]
        right: Any = threshold * 1000 * months * rule.working_days_per_month
    elif rule.metric == "collection_ratio":
        left = values["collected"]
        right = values["revenue"] * float(threshold)
    elif rule.metric == "purchase_count":
        left, right = values["purchases"], threshold
    else:
        left, right = values[rule.metric], threshold * SCALE[rule.metric]
    compare = {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}
    condition: ColumnElement[bool] = compare[rule.op]
    if rule.metric == "collection_ratio":
        condition = and_(values["revenue"] > 0, condition)
    return condition


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


async def rank(
    session: AsyncSession, policy: PolicyDocument, as_of: dt.datetime, *, sample: int | None
) -> Ranking:
    """Rank everyone known by `as_of`; return figures per tier, moves, and the changed
    customers (all of them, or at most `sample`)."""
    bands = policy.bands
    order = policy.tier_order()
    end_day = as_of.astimezone(dt.UTC).date()
    band_start = end_day - dt.timedelta(days=bands.window_days - 1)
    earliest = min(
        [band_start] + [end_day - dt.timedelta(days=r.window_days - 1) for r in policy.rules]
    )

    columns: list[Any] = [
        AGGREGATES.c.customer_id,
        AGGREGATES.c.tier.label("previous_tier"),
        _window_sum(bands.metric, band_start).label("v"),
    ]
    for index, rule in enumerate(policy.rules):
        start = end_day - dt.timedelta(days=rule.window_days - 1)
        for name, source in (
            ("revenue", "revenue"),
            ("quantity", "quantity"),
            ("collected", "collected"),
            ("purchases", "purchases"),
        ):
            columns.append(_window_sum(source, start).label(f"r{index}_{name}"))
    per_customer = (
        select(*columns)
        .select_from(
            AGGREGATES.outerjoin(
                DAILY,
                and_(
                    DAILY.c.customer_id == AGGREGATES.c.customer_id,
                    DAILY.c.day >= earliest,
                    DAILY.c.day <= end_day,
                ),
            )
        )
        .where(AGGREGATES.c.first_seen_at <= as_of)
        .group_by(AGGREGATES.c.customer_id, AGGREGATES.c.tier)
        .cte("per_customer")
    )
    positive = case((per_customer.c.v > 0, per_customer.c.v), else_=0)
    ranked = select(
        per_customer,
        positive.label("pv"),
        func.sum(positive).over(order_by=positive.desc(), range_=(None, 0)).label("cum"),
        func.sum(positive).over(partition_by=positive).label("peers"),
        func.rank().over(order_by=positive.desc()).label("rnk"),
        func.sum(positive).over().label("total"),
        func.count().over().label("n"),
    ).cte("ranked")

    # The band each customer falls in (0 = best), then each rule in order.
    bounds: list[Any] = []
    share = 0.0
    for index, tier in enumerate(bands.tiers):
        share += tier.share
        if bands.method == "cumulative_share":
            inside = (ranked.c.cum - ranked.c.peers) < ranked.c.total * share
        else:
            inside = (ranked.c.rnk - 1) < ranked.c.n * share
        bounds.append((and_(ranked.c.pv > 0, inside), index))
    band_index: Any = case(*bounds, else_=len(bands.tiers))
    final_index: Any = band_index
    fired: list[Any] = []
    for index, rule in enumerate(policy.rules):
        values = {
            name: getattr(ranked.c, f"r{index}_{name}")
            for name in ("revenue", "quantity", "collected", "purchases")
        }
        condition = _rule_condition(rule, values)
        fired.append(case((condition, 1), else_=0).label(f"fired_{index}"))
        target = order.index(rule.min_tier or rule.max_tier or "")
        if rule.min_tier is not None:
            final_index = case((and_(condition, final_index > target), target), else_=final_index)
        else:
            final_index = case((and_(condition, final_index < target), target), else_=final_index)
    tier_name = case(*[(final_index == i, literal(name)) for i, name in enumerate(order)])
    band_name = case(*[(band_index == i, literal(name)) for i, name in enumerate(order)])
    result = select(ranked, tier_name.label("tier"), band_name.label("band_tier"), *fired).cte(
        "result"
    )

    per_tier_rows = await session.execute(
        select(result.c.tier, func.count(), func.coalesce(func.sum(result.c.pv), 0)).group_by(
            result.c.tier
        )
    )
    per_tier = {tier: (int(count), int(volume)) for tier, count, volume in per_tier_rows.all()}
    changed_filter = or_(result.c.previous_tier.is_(None), result.c.previous_tier != result.c.tier)
    move_rows = await session.execute(
        select(result.c.previous_tier, result.c.tier, func.count())
        .where(changed_filter)
        .group_by(result.c.previous_tier, result.c.tier)
    )
    moves = {(previous, tier): int(count) for previous, tier, count in move_rows.all()}
    query = select(result).where(changed_filter).order_by(result.c.rnk, result.c.customer_id)
    if sample is not None:
        query = query.limit(sample)
    changed = [
        _ranked_customer(row._mapping, policy) for row in (await session.execute(query)).all()
    ]
    return Ranking(
        customers=sum(count for count, _ in per_tier.values()),
        per_tier=per_tier,
        moves=moves,
        changed=changed,
    )


def _ranked_customer(row: Any, policy: PolicyDocument) -> RankedCustomer:
    total = int(row["total"] or 0)
    ranked = RankedCustomer(
        customer_id=row["customer_id"],
        previous_tier=row["previous_tier"],
        tier=row["tier"],
        band_tier=row["band_tier"],
        value=in_units(int(row["v"]), policy.bands.metric),
        rank=int(row["rnk"]),
        customers=int(row["n"]),
        cumulative_share=(int(row["cum"]) / total) if total > 0 and row["pv"] > 0 else 0.0,
    )
    for index, rule in enumerate(policy.rules):
        sums = {
            name: int(row[f"r{index}_{name}"])
            for name in ("revenue", "quantity", "collected", "purchases")
        }
        ranked.rule_values[rule.name] = rule_value(rule, sums)
        if row[f"fired_{index}"]:
            ranked.rules_fired.append(index)
    return ranked


def _percent(value: float) -> str:
    """A share as a person reads it: whole percent, or one decimal below 10%."""
    percent = value * 100
    if percent < 10:
        return f"{math.ceil(percent * 10) / 10:g}%"
    return f"{math.ceil(percent):d}%"


def explain(customer: RankedCustomer, policy: PolicyDocument) -> list[str]:
    """Reasons a person can read, in the order they were applied."""
    bands = policy.bands
    metric = METRIC_TEXT[bands.metric]
    window = f"over the last {bands.window_days} days"
    reasons: list[str] = []
    if customer.value <= 0:
        reasons.append(f"{customer.band_tier}: no {metric} {window}")
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
                f"(cumulative share {_percent(customer.cumulative_share)})"
            )
        else:
            reasons.append(
                f"{customer.band_tier}: in the top {top} of customers by {metric} {window} "
                f"(rank {customer.rank} of {customer.customers})"
            )
    order = policy.tier_order()
    current = order.index(customer.band_tier)
    for index in customer.rules_fired:
        rule = policy.rules[index]
        target = order.index(rule.min_tier or rule.max_tier or "")
        lifts = rule.min_tier is not None and current > target
        caps = rule.max_tier is not None and current < target
        if not (lifts or caps):
            continue
        current = target
        figure = customer.rule_values[rule.name]
        detail = f"{METRIC_TEXT[rule.metric]} over the last {rule.window_days} days is {figure}"
        if rule.metric == "average_daily_quantity":
            detail += f", counting {rule.working_days_per_month} working days a month"
        verb = "lifted to" if lifts else "capped at"
        reasons.append(
            f"{verb} {order[target]} by rule '{rule.name}': {detail} ({rule.op} {rule.value})"
        )
    return reasons


def scores(customer: RankedCustomer, policy: PolicyDocument) -> dict[str, Any]:
    return {
        "metric": policy.bands.metric,
        "window_days": policy.bands.window_days,
        "value": str(customer.value),
        "rank": customer.rank,
        "customers": customer.customers,
        "cumulative_share": round(customer.cumulative_share, 4),
        "band_tier": customer.band_tier,
        "rules": {name: str(value) for name, value in customer.rule_values.items()},
    }


async def summary_figures(
    session: AsyncSession, window_days: int, as_of: dt.datetime
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    """Per current tier: (customers, revenue, collected) over the window, in stored units;
    the total revenue; and the revenue of the top 20% of customers by revenue."""
    end_day = as_of.astimezone(dt.UTC).date()
    start = end_day - dt.timedelta(days=window_days - 1)
    per_customer = (
        select(
            AGGREGATES.c.customer_id,
            AGGREGATES.c.tier,
            _window_sum("revenue", start).label("revenue"),
            _window_sum("collected", start).label("collected"),
        )
        .select_from(
            AGGREGATES.outerjoin(
                DAILY,
                and_(
                    DAILY.c.customer_id == AGGREGATES.c.customer_id,
                    DAILY.c.day >= start,
                    DAILY.c.day <= end_day,
                ),
            )
        )
        .where(AGGREGATES.c.first_seen_at <= as_of)
        .group_by(AGGREGATES.c.customer_id, AGGREGATES.c.tier)
        .cte("per_customer")
    )
    rows = await session.execute(
        select(
            per_customer.c.tier,
            func.count(),
            func.sum(per_customer.c.revenue),
            func.sum(per_customer.c.collected),
        ).group_by(per_customer.c.tier)
    )
    tiers = {tier: (int(n), int(rev or 0), int(col or 0)) for tier, n, rev, col in rows.all()}
    positive = case((per_customer.c.revenue > 0, per_customer.c.revenue), else_=0)
    ordered = select(
        positive.label("pv"),
        func.row_number().over(order_by=positive.desc()).label("rn"),
        func.count().over().label("n"),
    ).subquery()
    top = await session.execute(
        select(func.coalesce(func.sum(ordered.c.pv), 0)).where(ordered.c.rn * 5 <= ordered.c.n + 4)
    )
    total = sum(rev for _, rev, _ in tiers.values())
    return tiers, total, int(top.scalar() or 0)
