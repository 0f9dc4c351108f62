"""Tiering API schemas, and the policy document a team writes to choose and tune methods."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from shared.fields import JsonFloat, JsonInt, PastTimestamp, Timestamp

TierName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
WindowDays = Annotated[JsonInt, Field(ge=1, le=3660)]
BandMetric = Literal["revenue", "quantity", "collected"]
RuleMetric = Literal[
    "revenue",
    "quantity",
    "collected",
    "purchase_count",
    "average_daily_quantity",
    "collection_ratio",
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BandTier(StrictModel):
    name: TierName
    share: Annotated[JsonFloat, Field(gt=0, le=1)]


class Bands(StrictModel):
    """Pareto / share bands.

    `cumulative_share`: the first tier is the customers who together make the first
    `share` of the metric, the next tier the next `share`, and so on (A = top 50% of
    volume, B = next 20%, C = next 10%). `top_share`: each tier is the next `share` of
    customers by rank (top 20%). Customers beyond the last band get `rest`.
    """

    metric: BandMetric = "revenue"
    window_days: WindowDays = 365
    method: Literal["cumulative_share", "top_share"] = "cumulative_share"
    tiers: Annotated[list[BandTier], Field(min_length=1, max_length=10)]
    rest: TierName = "D"

    @model_validator(mode="after")
    def _shares_fit(self) -> Bands:
        if sum(tier.share for tier in self.tiers) > 1 + 1e-9:
            raise ValueError("the band shares add up to more than 1")
        names = [tier.name for tier in self.tiers] + [self.rest]
        if len(set(names)) != len(names):
            raise ValueError("tier names must differ (bands and rest)")
        return self


class Rule(StrictModel):
    """A threshold rule: when `metric op value` over the window, lift to `min_tier` or cap
    at `max_tier`. `average_daily_quantity` counts `working_days_per_month` a month."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    metric: RuleMetric
    window_days: WindowDays = 90
    working_days_per_month: Annotated[JsonInt, Field(ge=1, le=31)] = 26
    op: Literal[">", ">=", "<", "<="]
    value: Annotated[Decimal, Field(allow_inf_nan=False, max_digits=20, decimal_places=6)]
    min_tier: TierName | None = None
    max_tier: TierName | None = None

    @model_validator(mode="after")
    def _one_effect(self) -> Rule:
        if (self.min_tier is None) == (self.max_tier is None):
            raise ValueError("a rule sets exactly one of min_tier (lift) or max_tier (cap)")
        return self


class Rfm(StrictModel):
    """Recency, frequency and monetary value, each scored 1-5 by quintile over everyone
    (5 = most recent, most frequent, most spent); ties share a score."""

    window_days: WindowDays = 365


class ValueMatrix(StrictModel):
    """Sales contribution x payment-collection contribution -> high, medium, sub-medium,
    low value. A customer who buys a lot but pays late is medium, not high."""

    window_days: WindowDays = 365
    sales_threshold: Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=2)]
    collection_threshold: Annotated[JsonFloat, Field(ge=0, le=1)] = 0.8


class Thermometer(StrictModel):
    """0-100 warmth from contact recency (25) and frequency (25), satisfaction (20),
    complaints (15) and relationship level (15): stranger < 25 <= familiar < 50 <=
    trusted < 75 <= ally."""

    window_days: WindowDays = 180
    touches_for_full_frequency: Annotated[JsonInt, Field(ge=1, le=1000)] = 12


Weight = Annotated[JsonFloat, Field(ge=0, le=1)]


class Churn(StrictModel):
    """0-1 risk. `learned` (the default): the chance of no purchase within `horizon_days`,
    from a model fitted on the customer base's own history (`GET /v1/churn-model`), used
    once its back-test is ahead of days-since-the-last-purchase; until then, and with
    `rules`, a weighted sum of: the drop of the purchase rate against the customer's own
    history; how far past its usual purchase cycle it is (x / (1 + x) cycles late); open
    complaints; silence (no purchase nor contact). `at_risk` at or above the threshold.
    The weights add up to 1."""

    method: Literal["learned", "rules"] = "learned"
    horizon_days: WindowDays = 90
    recent_days: WindowDays = 90
    history_days: WindowDays = 730
    silence_days: WindowDays = 90
    threshold: Annotated[JsonFloat, Field(gt=0, le=1)] = 0.5
    weight_rate_drop: Weight = 0.35
    weight_overdue: Weight = 0.35
    weight_complaints: Weight = 0.15
    weight_silence: Weight = 0.15

    @model_validator(mode="after")
    def _weights_add_up(self) -> Churn:
        total = (
            self.weight_rate_drop
            + self.weight_overdue
            + self.weight_complaints
            + self.weight_silence
        )
        if abs(total - 1) > 1e-6:
            raise ValueError(f"the churn weights add up to {total:g}, not 1")
        return self


class PolicyDocument(StrictModel):
    """How customers are ranked: bands first, then each rule in order may lift or cap;
    the scores (RFM, value matrix, thermometer, churn) are computed alongside."""

    bands: Bands
    rules: Annotated[list[Rule], Field(max_length=20)] = Field(default_factory=list)
    rfm: Rfm | None = Field(default_factory=Rfm)
    value_matrix: ValueMatrix | None = None
    thermometer: Thermometer | None = Field(default_factory=Thermometer)
    churn: Churn | None = Field(default_factory=Churn)

    @model_validator(mode="after")
    def _rules_name_known_tiers(self) -> PolicyDocument:
        known = self.tier_order()
        for rule in self.rules:
            target = rule.min_tier or rule.max_tier
            if target not in known:
                raise ValueError(f"rule {rule.name!r} names tier {target!r}, not one of {known}")
        return self

    def tier_order(self) -> list[str]:
        """Tier names from best to worst."""
        return list(self.tier_names)

    @cached_property
    def tier_names(self) -> tuple[str, ...]:
        """Tier names from best to worst, built once (a re-rank asks per changed customer)."""
        return (*(tier.name for tier in self.bands.tiers), self.bands.rest)


DEFAULT_POLICY = PolicyDocument(
    bands=Bands(
        metric="revenue",
        window_days=365,
        method="cumulative_share",
        tiers=[
            BandTier(name="A", share=0.5),
            BandTier(name="B", share=0.2),
            BandTier(name="C", share=0.1),
        ],
        rest="D",
    ),
)


class PolicyCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "revenue ABC", "document": DEFAULT_POLICY.model_dump(mode="json")}
            ]
        }
    )

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    document: PolicyDocument


class PolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    version: JsonInt
    status: Literal["draft", "active", "retired"]
    document: PolicyDocument
    created_by: str
    created_at: dt.datetime
    activated_at: dt.datetime | None


class AsOf(StrictModel):
    as_of: Timestamp | None = Field(
        default=None, description="Rank as if it were this moment, seeing only history up to it."
    )


class Aggregates(BaseModel):
    revenue: Decimal
    quantity: Decimal
    collected: Decimal
    purchase_count: JsonInt
    first_purchase_at: dt.datetime | None
    last_purchase_at: dt.datetime | None


class TierHistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tier: str
    previous_tier: str | None
    policy_id: uuid.UUID
    policy_version: JsonInt
    reasons: list[str]
    scores: dict[str, Any]
    as_of: dt.datetime
    changed_at: dt.datetime


class TierView(BaseModel):
    customer_id: uuid.UUID
    tier: str | None
    at_risk: StrictBool
    as_of: dt.datetime | None = Field(
        description="The moment tier, scores and reasons are of: the latest full "
        "ranking's, or that of the later event that placed the customer."
    )
    basis: Literal["ranking", "event"] | None = Field(
        description="`ranking`: a full ranking's figures (rank among everyone); `event`: "
        "placed after an event against that ranking's band edges."
    )
    scores: dict[str, Any]
    reasons: list[str]
    history: list[TierHistoryEntry]
    aggregates: Aggregates


class Mover(BaseModel):
    customer_id: uuid.UUID
    from_tier: str | None
    to_tier: str
    reasons: list[str]


class TierFigures(BaseModel):
    tier: str
    customers: JsonInt
    revenue_share: JsonFloat


class ChurnFeature(BaseModel):
    name: str
    weight: float = Field(description="On the standardised feature: + raises the risk.")


class ChurnModelOut(BaseModel):
    """The latest fitting of the churn model, and whether its risk is the one shown."""

    status: Literal["learned", "rules"] = Field(
        description="`learned`: customers' churn risk comes from this model; `rules`: "
        "from the policy's rule-based score (`reason` says why)."
    )
    reason: str | None
    fitted_at: dt.datetime | None
    horizon_days: JsonInt | None = Field(description="The policy's: no purchase within it.")
    label_days: JsonInt | None = Field(
        description="The window the labels used: the horizon, or less while the history "
        "is shorter than three horizons."
    )
    trained_on: JsonInt = Field(description="Customers with a purchase in the training set.")
    tested_on: JsonInt = Field(description="Customers with a purchase in the back-test.")
    churned_share: float | None = Field(description="Of the back-test's customers.")
    auc: float | None = Field(description="ROC AUC of the model on the back-test.")
    recency_auc: float | None = Field(
        description="ROC AUC of days since the last purchase alone, on the same back-test."
    )
    features: list[ChurnFeature]


class BacktestCreate(StrictModel):
    """Apply a policy as of a past moment, as a report (current tiers stay)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"as_of": "2026-06-30T23:59:59Z", "horizon_days": 90}]}
    )

    as_of: PastTimestamp
    policy_id: uuid.UUID | None = Field(default=None, description="Default: the active one.")
    horizon_days: WindowDays | None = Field(
        default=None,
        description="Who bought again within it, for judging the churn risk (default: the "
        "policy's churn horizon, else 90).",
    )


class BacktestChurn(BaseModel):
    evaluated: StrictBool
    reason: str | None = None
    customers: JsonInt | None = Field(default=None, description="Customers with a churn risk.")
    churned_share: JsonFloat | None = None
    auc: JsonFloat | None = Field(
        default=None, description="ROC AUC of the churn risk for 'bought nothing within'."
    )
    recency_auc: JsonFloat | None = Field(
        default=None, description="The same of days since the last purchase, as a baseline."
    )


class BacktestOut(BaseModel):
    id: uuid.UUID
    policy_id: uuid.UUID
    policy_version: JsonInt
    as_of: dt.datetime
    horizon_days: JsonInt
    customers: JsonInt
    tiers: list[TierFigures]
    churn: BacktestChurn
    created_at: dt.datetime
    created_by: str


class BacktestCustomerOut(BaseModel):
    customer_id: uuid.UUID
    rank: JsonInt
    value: Decimal = Field(description="The band metric over its window, in its units.")
    tier: str
    band_tier: str
    rfm_r: JsonInt | None
    rfm_f: JsonInt | None
    rfm_m: JsonInt | None
    value_segment: str | None
    thermometer: JsonFloat | None
    churn_risk: JsonFloat | None
    at_risk: StrictBool
    bought_again: StrictBool | None = Field(
        description="Bought within the horizon after as_of (null: that time has not passed)."
    )


class RankingOutcome(BaseModel):
    """What a re-rank did (recompute) or would do (simulate, or a recompute as of a past
    moment: `applied` false)."""

    policy_id: uuid.UUID
    policy_version: JsonInt
    as_of: dt.datetime
    customers: JsonInt
    changed: JsonInt
    tiers: list[TierFigures]
    moves: dict[str, int] = Field(description='Counts per "from->to" (from "none" when new).')
    sample: list[Mover]
    applied: StrictBool = Field(
        default=True,
        description="Whether current tiers were written and changes announced: never for "
        "a simulation or a moment in the past.",
    )


class SummaryTier(BaseModel):
    tier: str
    customers: JsonInt
    revenue: Decimal
    revenue_share: JsonFloat
    collection_ratio: JsonFloat | None


class TierSummary(BaseModel):
    policy_id: uuid.UUID
    policy_version: JsonInt
    window_days: JsonInt
    as_of: dt.datetime
    total_revenue: Decimal
    top_20_percent_revenue_share: JsonFloat = Field(
        description="Share of revenue made by the top 20% of customers: the 80/20 made visible."
    )
    tiers: list[SummaryTier]
