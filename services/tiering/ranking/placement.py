"""Between full rankings: customers touched by events placed against the latest
ranking's band edges, their rules and per-customer scores applied.
"""

from __future__ import annotations

import datetime as dt
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
    ) -> tuple[list[str | None], list[int | None]]:
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
class Reassessed:
    """Customers' rule outcomes and per-customer scores between two re-ranks, one entry
    each (columns, not an object per customer: a batch of events reassesses thousands);
    with a placement, also each one's band, metric value and the cut-off it was compared
    with."""

    rows: list[int]  # each one's position among the customers given
    tiers: list[str | None]  # after the rules
    band_tiers: list[str | None]
    values: list[int | None]
    cutoffs: list[int | None]
    scores: dict[str, list[Any]]  # SCORES_PLACED, one list each
    policy: PolicyDocument
    holds: NDArray[np.bool_]  # rule x customer: whether the rule held
    sums: list[dict[str, NDArray[np.int64]]]  # per rule, the figures it looked at

    def fired(self, at: int) -> list[int]:
        """The rules that held for the customer at `at` (in policy order)."""
        return [rule for rule in range(len(self.policy.rules)) if self.holds[rule, at]]

    def rule_values(self, at: int) -> dict[str, Decimal]:
        """The figures each rule looked at for the customer at `at`, in people's units."""
        return {
            rule.name: rule_value(rule, {name: int(column[at]) for name, column in sums.items()})
            for rule, sums in zip(self.policy.rules, self.sums, strict=True)
        }


async def reassess(
    session: AsyncSession,
    policy: PolicyDocument,
    customers: Sequence[KnownCustomer],
    as_of: dt.datetime,
    placement: Placement | None = None,
    bands: Sequence[str | None] | None = None,
) -> Reassessed:
    """Rules and the scores that depend only on the customer (value matrix, thermometer,
    churn) for these customers, by the re-rank's own functions over all of them at once;
    each in the band `placement` puts its metric value in (without one, its band in
    `bands`). Customers not known by `as_of` are left out."""
    figures = await load_figures(session, policy, as_of, customers)
    count = figures.count
    rows = figures.customers["row"].tolist()
    sums = [rule_sums(rule, figures) for rule in policy.rules]
    holds = (
        np.array([rule_holds(rule, found) for rule, found in zip(policy.rules, sums, strict=True)])
        if policy.rules
        else np.zeros((0, count), dtype=bool)
    )
    stored = _stored_scores(customer_scores(figures), np.arange(count))
    cutoffs: list[int | None] = [None] * count
    values: list[int | None] = [None] * count
    band_tiers: list[str | None]
    if placement is not None:
        metric = figures.window_sum(policy.bands.metric, policy.bands.window_days)
        band_tiers, cutoffs = placement.bands_of(metric, policy)
        values = metric.tolist()
    else:
        assert bands is not None
        band_tiers = [bands[row] for row in rows]
    tiers = list(band_tiers)
    for at in np.flatnonzero(holds.any(axis=0)).tolist():
        band = band_tiers[at]
        if band is not None:
            fired = [rule for rule in range(len(policy.rules)) if holds[rule, at]]
            tiers[at] = apply_rules(band, fired, policy)
    return Reassessed(
        rows=rows,
        tiers=tiers,
        band_tiers=band_tiers,
        values=values,
        cutoffs=cutoffs,
        scores={name: stored[name] for name in SCORES_PLACED},
        policy=policy,
        holds=holds,
        sums=sums,
    )
