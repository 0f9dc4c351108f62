"""Between full rankings: customers touched by events placed against the latest
ranking's band edges, their rules and per-customer scores applied.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import KnownCustomer
from services.tiering.ranking.compute import customer_scores, rule_holds, rule_sums, rule_value
from services.tiering.ranking.explain import apply_rules
from services.tiering.ranking.figures import load_figures
from services.tiering.ranking.store import _stored_scores
from services.tiering.schemas import PolicyDocument


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
    customers: Sequence[tuple[KnownCustomer, str | None]],
    as_of: dt.datetime,
    placement: Placement | None = None,
) -> dict[uuid.UUID, Reassessment]:
    """Rules and the scores that depend only on the customer (value matrix, thermometer,
    churn) for these customers, by the re-rank's own functions over all of them at once;
    each in the band `placement` puts its metric value in (without one, the band it
    has). Customers not known by `as_of` are left out."""
    figures = await load_figures(session, policy, as_of, [row for row, _ in customers])
    bands = {row.key: band for row, band in customers}
    ids = {row.key: row.customer_id for row, _ in customers}
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
        outcomes[ids[key]] = Reassessment(
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
