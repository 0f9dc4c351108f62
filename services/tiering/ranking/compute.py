"""The ranking methods over arrays: sums over windows, share bands, rules, RFM quintiles,
value matrix, thermometer and churn risk, for every customer at once (no Python loop
over customers). The same functions score one customer after each event, so the
re-rank and the per-event path cannot disagree.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.tiering.churn import learned_risk
from services.tiering.ranking.figures import (
    LEVEL_WARMTH,
    NONE,
    SCALE,
    Figures,
    Flags,
    Floats,
    Ints,
    _rule_columns,
    in_units,
)
from services.tiering.schemas import PolicyDocument, Rule

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
class BandFigures:
    """Where each customer falls in the share bands (0 = best band)."""

    value: Ints  # the metric over the window
    band: Ints
    rank: Ints  # 1 = largest; ties share a rank
    cumulative: Ints  # the metric of everyone ranked at or above
    ahead: Ints  # the metric of everyone ranked strictly above: what the band compares
    total: int


def share_bands(figures: Figures) -> BandFigures:
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
    return BandFigures(value, band, rank, total - before[below], above, total)


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
    bands: BandFigures
    fired: list[Flags]
    tier: Ints
    scores: dict[str, NDArray[Any]]


def score_everyone(figures: Figures) -> Scored:
    policy = figures.policy
    # The customers' own scores in a second thread while this one ranks: numpy's sorts
    # and bincounts let go of the GIL, and the database is idle meanwhile, so both cores
    # work. (Figures computes each sum once, whichever thread asks first.)
    with ThreadPoolExecutor(1) as beside:
        own_scores = beside.submit(customer_scores, figures)
        bands = share_bands(figures)
        fired = [rule_holds(rule, rule_sums(rule, figures)) for rule in policy.rules]
        rfm = _rfm_scores(figures)
        scores = {**own_scores.result(), **rfm}
    return Scored(figures, bands, fired, apply_rule_flags(bands.band, fired, policy), scores)


def _rfm_scores(figures: Figures) -> dict[str, Ints]:
    """RFM quintiles (codes 1-5, NONE when the policy has no RFM)."""
    policy = figures.policy
    scores: dict[str, Ints] = {}
    for name in ("rfm_r", "rfm_f", "rfm_m"):
        scores[name] = np.full(figures.count, NONE, dtype=np.int64)
    if policy.rfm:
        # Recency ranks every customer by the last purchase day (none = least recent).
        _, any_last_day, _ = figures.purchase_days()
        scores["rfm_r"] = _quintile(np.where(any_last_day >= 0, any_last_day, -(10**7)))
        scores["rfm_f"] = _quintile(figures.window_sum("purchases", policy.rfm.window_days))
        scores["rfm_m"] = _quintile(figures.window_sum("revenue", policy.rfm.window_days))
    return scores


def band_cutoffs(bands: BandFigures, band_count: int) -> list[int | None]:
    """Per band, the smallest metric value inside it (None for an empty band): where a
    customer touched by events is placed until the next ranking."""
    cutoffs: list[int | None] = []
    for index in range(band_count):
        inside = bands.value[(bands.band == index) & (bands.value > 0)]
        cutoffs.append(int(inside.min()) if inside.size else None)
    return cutoffs
