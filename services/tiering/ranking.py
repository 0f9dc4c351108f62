"""The set-based re-rank: one SQL statement ranks every customer under a policy as of a
moment, from the daily aggregates; Python only touches the customers whose tier changes.

Amounts stay in the stored integer units inside SQL (fen for money, thousandths for
quantities) so sums and comparisons are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.tiering.models import (
    Complaint,
    CustomerAggregate,
    DailyActivity,
    Touch,
    epoch_day,
)
from services.tiering.schemas import PolicyDocument, Rule
from shared.db import UTCDateTime

AGGREGATES: Table = CustomerAggregate.__table__  # type: ignore[assignment]
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
    method_scores: dict[str, Any] = field(default_factory=dict)


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


def _window_sum(column_name: str, start: Any, stop: Any = None) -> ColumnElement[Any]:
    """Sum of a daily column from `start` (to `stop`; the join already ends at as_of)."""
    column = _raw(DAILY.c[column_name])
    inside = (
        DAILY.c.day >= start if stop is None else and_(DAILY.c.day >= start, DAILY.c.day <= stop)
    )
    return func.coalesce(func.sum(case((inside, column), else_=0)), 0)


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


def _clamp(expression: Any) -> Any:
    """Limit a number to [0, 1] (CASE: portable where LEAST/GREATEST are not)."""
    return case((expression < 0, 0.0), (expression > 1, 1.0), else_=expression)


def _latest(a: Any, b: Any) -> Any:
    return case((a.is_(None), b), (b.is_(None), a), (a > b, a), else_=b)


def _figures(
    policy: PolicyDocument, end: Any, as_of: Any, window_start: Any, customer_id: Any = None
) -> Any:
    """One row per customer known by `as_of` (or just one): every sum and date the
    methods need. `end` is `as_of`'s epoch day and `window_start` the thermometer's
    first moment: values, or bind parameters for a statement built once and reused."""
    bands = policy.bands

    def since(days: int) -> Any:
        return end - (days - 1)

    windows = [bands.window_days] + [rule.window_days for rule in policy.rules]
    if policy.rfm:
        windows.append(policy.rfm.window_days)
    if policy.value_matrix:
        windows.append(policy.value_matrix.window_days)
    if policy.churn:
        windows.append(policy.churn.history_days)
    earliest = since(max(windows))

    bought = DAILY.c.purchases > 0
    columns: list[Any] = [
        AGGREGATES.c.customer_id,
        AGGREGATES.c.tier.label("previous_tier"),
        AGGREGATES.c.relationship_level,
        _window_sum(bands.metric, since(bands.window_days)).label("v"),
        func.max(case((bought, DAILY.c.day))).label("last_day"),
    ]
    for index, rule in enumerate(policy.rules):
        for name in ("revenue", "quantity", "collected", "purchases"):
            columns.append(_window_sum(name, since(rule.window_days)).label(f"r{index}_{name}"))
    if policy.rfm:
        start = since(policy.rfm.window_days)
        columns += [
            _window_sum("purchases", start).label("rfm_freq"),
            _window_sum("revenue", start).label("rfm_money"),
        ]
    if policy.value_matrix:
        start = since(policy.value_matrix.window_days)
        columns += [
            _window_sum("revenue", start).label("vm_revenue"),
            _window_sum("collected", start).label("vm_collected"),
        ]
    if policy.churn:
        churn = policy.churn
        history_start = since(churn.history_days)
        in_history = and_(bought, DAILY.c.day >= history_start)
        columns += [
            _window_sum("purchases", since(churn.recent_days)).label("recent_purchases"),
            _window_sum("purchases", history_start, end - churn.recent_days).label(
                "past_purchases"
            ),
            func.min(case((in_history, DAILY.c.day))).label("first_in_history"),
            func.count(case((in_history, DAILY.c.day))).label("days_in_history"),
        ]
    figures = (
        select(*columns)
        .select_from(
            AGGREGATES.outerjoin(
                DAILY,
                and_(
                    DAILY.c.customer_id == AGGREGATES.c.customer_id,
                    DAILY.c.day >= earliest,
                    DAILY.c.day <= end,
                ),
            )
        )
        .where(AGGREGATES.c.first_seen_at <= as_of)
        .where(
            AGGREGATES.c.customer_id == customer_id if customer_id is not None else literal(True)
        )
        .group_by(AGGREGATES.c.customer_id, AGGREGATES.c.tier, AGGREGATES.c.relationship_level)
        .subquery("figures")
    )
    if not (policy.thermometer or policy.churn):
        return figures
    window = policy.thermometer.window_days if policy.thermometer else 180
    touches = (
        select(
            TOUCHES.c.customer_id,
            func.max(TOUCHES.c.day).label("last_touch"),
            func.count(case((TOUCHES.c.day >= since(window), TOUCHES.c.id))).label("touches"),
            func.sum(case((TOUCHES.c.day >= since(window), TOUCHES.c.satisfaction))).label(
                "satisfaction_sum"
            ),
            func.count(case((TOUCHES.c.day >= since(window), TOUCHES.c.satisfaction))).label(
                "satisfaction_count"
            ),
        )
        .where(TOUCHES.c.day <= end)
        .where(TOUCHES.c.customer_id == customer_id if customer_id is not None else literal(True))
        .group_by(TOUCHES.c.customer_id)
        .subquery("touch_figures")
    )
    is_open = or_(COMPLAINTS.c.closed_at.is_(None), COMPLAINTS.c.closed_at > as_of)
    complaints = (
        select(
            COMPLAINTS.c.customer_id,
            func.count(case((is_open, COMPLAINTS.c.complaint_id))).label("open_complaints"),
            func.count(
                case((COMPLAINTS.c.opened_at >= window_start, COMPLAINTS.c.complaint_id))
            ).label("recent_complaints"),
        )
        .where(COMPLAINTS.c.opened_at <= as_of)
        .where(
            COMPLAINTS.c.customer_id == customer_id if customer_id is not None else literal(True)
        )
        .group_by(COMPLAINTS.c.customer_id)
        .subquery("complaint_figures")
    )
    return (
        select(
            figures,
            touches.c.last_touch,
            func.coalesce(touches.c.touches, 0).label("touches"),
            func.coalesce(touches.c.satisfaction_sum, 0).label("satisfaction_sum"),
            func.coalesce(touches.c.satisfaction_count, 0).label("satisfaction_count"),
            func.coalesce(complaints.c.open_complaints, 0).label("open_complaints"),
            func.coalesce(complaints.c.recent_complaints, 0).label("recent_complaints"),
        )
        .select_from(
            figures.outerjoin(touches, touches.c.customer_id == figures.c.customer_id).outerjoin(
                complaints, complaints.c.customer_id == figures.c.customer_id
            )
        )
        .subquery("all_figures")
    )


def _scores(policy: PolicyDocument, ranked: Any, end: Any) -> list[Any]:
    """Score columns over the ranked rows (RFM ranks are window columns of `ranked`)."""
    columns: list[Any] = []
    if policy.rfm:
        for name in ("r", "f", "m"):
            rank_column = getattr(ranked.c, f"rfm_{name}_rank")
            columns.append((1 + (5 * (rank_column - 1)) // ranked.c.n).label(f"rfm_{name}"))
    else:
        columns += [literal(None).label(f"rfm_{name}") for name in ("r", "f", "m")]
    if policy.value_matrix:
        matrix = policy.value_matrix
        sales_high = ranked.c.vm_revenue >= int(matrix.sales_threshold * 100)
        pays = and_(
            ranked.c.vm_revenue > 0,
            ranked.c.vm_collected >= ranked.c.vm_revenue * matrix.collection_threshold,
        )
        columns.append(
            case(
                (and_(sales_high, pays), "high"),
                (sales_high, "medium"),
                (pays, "sub-medium"),
                else_="low",
            ).label("value_segment")
        )
    else:
        columns.append(literal(None).label("value_segment"))
    if policy.thermometer:
        thermo = policy.thermometer
        recency = case(
            (ranked.c.last_touch.is_(None), 0.0),
            else_=_clamp(1 - (end - ranked.c.last_touch) * 1.0 / thermo.window_days),
        )
        frequency = _clamp(ranked.c.touches * 1.0 / thermo.touches_for_full_frequency)
        satisfaction = case(
            (
                ranked.c.satisfaction_count > 0,
                (ranked.c.satisfaction_sum * 1.0 / ranked.c.satisfaction_count - 1) / 4,
            ),
            else_=0.5,
        )
        calm = _clamp(1 - ranked.c.open_complaints * 0.5 - ranked.c.recent_complaints * 0.1)
        level = case(
            (ranked.c.relationship_level == "strategic_alliance", 1.0),
            (ranked.c.relationship_level == "partner", 0.5),
            else_=0.0,
        )
        columns.append(
            (25 * recency + 25 * frequency + 20 * satisfaction + 15 * calm + 15 * level).label(
                "thermometer"
            )
        )
    else:
        columns.append(literal(None).label("thermometer"))
    if policy.churn:
        churn = policy.churn
        recency = end - ranked.c.last_day
        cycle = (
            (ranked.c.last_day - ranked.c.first_in_history)
            * 1.0
            / func.nullif(ranked.c.days_in_history - 1, 0)
        )
        # How many usual cycles overdue, as x / (1 + x): 0 when on time, 0.5 one cycle
        # late, approaching 1 but never flat, so the long-gone still rank above the late.
        late = case(
            (or_(cycle.is_(None), cycle == 0), recency * 1.0 / 90),
            else_=recency / cycle - 1,
        )
        overdue = case((late > 0, late / (1 + late)), else_=0.0)
        past_rate = (
            ranked.c.past_purchases
            * churn.recent_days
            * 1.0
            / (churn.history_days - churn.recent_days)
        )
        drop = case((past_rate > 0, _clamp(1 - ranked.c.recent_purchases / past_rate)), else_=0.0)
        complaints = _clamp(ranked.c.open_complaints / 2.0)
        last_contact = _latest(ranked.c.last_day, ranked.c.last_touch)
        silence = _clamp((end - last_contact - churn.silence_days) * 1.0 / 180)
        risk = case(
            (ranked.c.last_day.is_(None), None),
            else_=churn.weight_rate_drop * drop
            + churn.weight_overdue * overdue
            + churn.weight_complaints * complaints
            + churn.weight_silence * silence,
        )
        columns += [
            risk.label("churn_risk"),
            case((risk >= churn.threshold, True), else_=False).label("at_risk"),
        ]
    else:
        columns += [literal(None).label("churn_risk"), literal(False).label("at_risk")]
    return columns


async def rank(
    session: AsyncSession,
    policy: PolicyDocument,
    as_of: dt.datetime,
    *,
    sample: int | None,
    store_scores: bool = False,
) -> Ranking:
    """Rank everyone known by `as_of`; return figures per tier, moves, and the changed
    customers (all of them, or at most `sample`). With `store_scores`, write every
    customer's scores and band (one UPDATE, only rows whose scores changed)."""
    bands = policy.bands
    order = policy.tier_order()
    end = epoch_day(as_of)
    figures = _figures(policy, end, as_of, thermometer_start(policy, as_of))
    positive = case((figures.c.v > 0, figures.c.v), else_=0)
    window_columns: list[Any] = [
        func.sum(positive).over(order_by=positive.desc(), range_=(None, 0)).label("cum"),
        func.sum(positive).over(partition_by=positive).label("peers"),
        func.rank().over(order_by=positive.desc()).label("rnk"),
        func.sum(positive).over().label("total"),
        func.count().over().label("n"),
    ]
    if policy.rfm:
        window_columns += [
            func.rank()
            .over(order_by=func.coalesce(figures.c.last_day, -(10**7)))
            .label("rfm_r_rank"),
            func.rank().over(order_by=figures.c.rfm_freq).label("rfm_f_rank"),
            func.rank().over(order_by=figures.c.rfm_money).label("rfm_m_rank"),
        ]
    ranked = select(figures, positive.label("pv"), *window_columns).cte("ranked")

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
    ranking = select(
        ranked,
        tier_name.label("tier"),
        band_name.label("band_tier"),
        *fired,
        *_scores(policy, ranked, end),
    )
    # Rank once into a temporary table; the figures, the movers and the score update
    # then read it instead of ranking everyone again for each.
    result = _temporary_table(ranking)
    connection = await session.connection()
    await connection.run_sync(lambda sync: result.create(sync))
    try:
        await session.execute(insert(result).from_select(list(result.c.keys()), ranking))
        return await _read_ranking(session, result, policy, sample, store_scores)
    finally:
        await connection.run_sync(lambda sync: result.drop(sync))


_TEXT_COLUMNS = {"previous_tier", "tier", "band_tier", "relationship_level", "value_segment"}


def _temporary_table(ranking: Any) -> Table:
    columns: list[Column[Any]] = []
    for column in ranking.selected_columns:
        name = column.key
        if name == "customer_id":
            kind: Any = Uuid()
        elif name in _TEXT_COLUMNS:
            kind = String(40)
        elif name == "at_risk":
            kind = Boolean()
        elif name in ("churn_risk", "thermometer"):
            kind = Double()
        else:
            kind = Numeric()
        columns.append(Column(name, kind))
    return Table(f"ranking_{uuid.uuid4().hex[:12]}", MetaData(), *columns, prefixes=["TEMPORARY"])


async def _read_ranking(
    session: AsyncSession,
    result: Table,
    policy: PolicyDocument,
    sample: int | None,
    store_scores: bool,
) -> Ranking:
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
    if store_scores:
        await _store_scores(session, result)
    return Ranking(
        customers=sum(count for count, _ in per_tier.values()),
        per_tier=per_tier,
        moves=moves,
        changed=changed,
    )


SCORE_COLUMNS = (
    "band_tier",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "value_segment",
    "thermometer",
    "churn_risk",
    "at_risk",
)


async def _store_scores(session: AsyncSession, result: Any) -> None:
    """Write each customer's band and scores where they changed: one set-based UPDATE."""
    source = select(result.c.customer_id, *[result.c[name] for name in SCORE_COLUMNS]).subquery()
    differs = or_(*[AGGREGATES.c[name].is_distinct_from(source.c[name]) for name in SCORE_COLUMNS])
    await session.execute(
        update(AGGREGATES)
        .where(AGGREGATES.c.customer_id == source.c.customer_id, differs)
        .values({name: source.c[name] for name in SCORE_COLUMNS}),
        execution_options={"synchronize_session": False},
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
    ranked.method_scores = method_scores(row)
    for index, rule in enumerate(policy.rules):
        sums = {
            name: int(row[f"r{index}_{name}"])
            for name in ("revenue", "quantity", "collected", "purchases")
        }
        ranked.rule_values[rule.name] = rule_value(rule, sums)
        if row[f"fired_{index}"]:
            ranked.rules_fired.append(index)
    return ranked


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
    reasons += rule_reasons(customer.band_tier, customer.rules_fired, customer.rule_values, policy)
    return reasons


def _rule_moves(
    band_tier: str, fired: list[int], policy: PolicyDocument
) -> Iterator[tuple[Rule, str, bool]]:
    """The rules that hold and move the tier, applied in order from the band (the SQL's
    CASE chain, in Python): each as (rule, the tier it gives, whether it lifted)."""
    order = policy.tier_order()
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


def rule_holds(rule: Rule, sums: dict[str, int]) -> bool:
    """Whether `metric op value` holds, exactly (no rounding), like `_rule_condition`."""
    threshold = Decimal(rule.value)
    if rule.metric == "average_daily_quantity":
        left = Decimal(sums["quantity"])
        right = threshold * 1000 * Decimal(rule.window_days) / 30 * rule.working_days_per_month
    elif rule.metric == "collection_ratio":
        if sums["revenue"] <= 0:
            return False
        left, right = Decimal(sums["collected"]), Decimal(sums["revenue"]) * threshold
    elif rule.metric == "purchase_count":
        left, right = Decimal(sums["purchases"]), threshold
    else:
        left, right = Decimal(sums[rule.metric]), threshold * SCALE[rule.metric]
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[rule.op]


def thermometer_start(policy: PolicyDocument, as_of: dt.datetime) -> dt.datetime:
    window = policy.thermometer.window_days if policy.thermometer else 180
    return as_of - dt.timedelta(days=window)


@functools.lru_cache(maxsize=16)
def _customer_statement(policy_json: str) -> Any:
    """The one-customer figures and scores statement of a policy, built once: building
    SQL expressions costs more than running them, and this runs on every event."""
    own = PolicyDocument.model_validate_json(policy_json).model_copy(update={"rfm": None})
    end = bindparam("end_day", type_=Integer())
    figures = _figures(
        own,
        end,
        bindparam("as_of", type_=UTCDateTime()),
        bindparam("window_start", type_=UTCDateTime()),
        bindparam("customer_id", type_=Uuid()),
    )
    return select(figures, *_scores(own, figures, end))


@dataclass
class Reassessment:
    """One customer's rule outcome and per-customer scores, between two re-ranks."""

    tier: str | None
    fired: list[int]
    rule_values: dict[str, Decimal]
    scores: dict[str, Any]


async def reassess(
    session: AsyncSession,
    policy: PolicyDocument,
    customer_id: uuid.UUID,
    band_tier: str | None,
    as_of: dt.datetime,
) -> Reassessment | None:
    """Rules and the scores that depend only on this customer (value matrix, thermometer,
    churn), from the same figures the re-rank uses; the band stays the last re-rank's."""
    statement = _customer_statement(policy.model_dump_json())
    row = (
        await session.execute(
            statement,
            {
                "end_day": epoch_day(as_of),
                "as_of": as_of,
                "window_start": thermometer_start(policy, as_of),
                "customer_id": customer_id,
            },
        )
    ).first()
    if row is None:
        return None
    found = row._mapping
    fired: list[int] = []
    values: dict[str, Decimal] = {}
    for index, rule in enumerate(policy.rules):
        sums = {
            name: int(found[f"r{index}_{name}"])
            for name in ("revenue", "quantity", "collected", "purchases")
        }
        values[rule.name] = rule_value(rule, sums)
        if rule_holds(rule, sums):
            fired.append(index)
    tier = apply_rules(band_tier, fired, policy) if band_tier is not None else None
    stored = {
        name: found[name] for name in ("value_segment", "thermometer", "churn_risk", "at_risk")
    }
    return Reassessment(tier=tier, fired=fired, rule_values=values, scores=stored)


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
        **customer.method_scores,
    }


async def summary_figures(
    session: AsyncSession, window_days: int, as_of: dt.datetime
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    """Per current tier: (customers, revenue, collected) over the window, in stored units;
    the total revenue; and the revenue of the top 20% of customers by revenue."""
    end_day = epoch_day(as_of)
    start = end_day - window_days + 1
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
