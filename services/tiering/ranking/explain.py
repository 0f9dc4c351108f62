"""What people read: a tier's reasons and figures, made from the stored figures of a
ranking or a placement and the policy (immutable once active), when shown.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.tiering.ranking.figures import in_units
from services.tiering.schemas import PolicyDocument, Rule

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
