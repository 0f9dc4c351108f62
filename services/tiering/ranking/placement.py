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
from numpy.typing import NDArray
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

    def bands_of(
        self, values: NDArray[np.int64], policy: PolicyDocument
    ) -> tuple[list[str], list[int | None]]:
        """The band each metric value falls in (the first whose edge it reaches, when
        above zero), and the edge it was compared with (for the rest, the lowest band's)."""
        lowest = next((cutoff for cutoff in reversed(self.cutoffs) if cutoff is not None), None)
        names = np.full(len(values), policy.bands.rest, dtype=object)
        edges = np.full(len(values), lowest, dtype=object)
        placed = values <= 0
        for tier, cutoff in zip(policy.bands.tiers, self.cutoffs, strict=False):
            if cutoff is None:
                continue
            here = ~placed & (values >= cutoff)
            names[here] = tier.name
            edges[here] = cutoff
            placed |= here
        return names.tolist(), edges.tolist()


SCORES_PLACED = ("value_segment", "thermometer", "churn_risk", "at_risk")


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
    fired_by_customer = (
        [[index for index, held in enumerate(row) if held] for row in np.array(holds).T.tolist()]
        if holds
        else [[] for _ in range(figures.count)]
    )
    stored = _stored_scores(customer_scores(figures), np.arange(figures.count))
    keys = figures.customers["key"].tolist()
    band_tiers: list[str | None]
    cutoffs: list[int | None] = [None] * len(keys)
    value_list: list[int | None] = [None] * len(keys)
    if placement is not None:
        placed_bands, cutoffs = placement.bands_of(values, policy)
        band_tiers = list(placed_bands)
        value_list = values.tolist()
    else:
        band_tiers = [bands[key] for key in keys]
    scores = zip(*(stored[name] for name in SCORES_PLACED), strict=True)
    outcomes: dict[uuid.UUID, Reassessment] = {}
    for i, (key, band_tier, cutoff, value, fired, own_scores) in enumerate(
        zip(keys, band_tiers, cutoffs, value_list, fired_by_customer, scores, strict=True)
    ):
        rule_figures = {
            rule.name: rule_value(rule, {name: int(column[i]) for name, column in rule_sum.items()})
            for rule, rule_sum in zip(policy.rules, sums, strict=True)
        }
        tier = band_tier
        if band_tier is not None and fired:
            tier = apply_rules(band_tier, fired, policy)
        outcomes[ids[key]] = Reassessment(
            tier=tier,
            fired=fired,
            rule_values=rule_figures,
            scores=dict(zip(SCORES_PLACED, own_scores, strict=True)),
            band_tier=band_tier,
            value=value,
            cutoff=cutoff,
        )
    return outcomes
