"""The full re-rank: load everyone, compute in a worker thread, write the score rows
that changed; the changed customers' history figures for the caller to record.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import (
    TIER_HISTORY,
)
from services.tiering.ranking.compute import Scored, rule_sums, rule_value, score_everyone
from services.tiering.ranking.figures import (
    AGGREGATES,
    NONE,
    SCORES,
    SEGMENTS,
    STANDING,
    Figures,
    Flags,
    Ints,
    load_figures,
)
from services.tiering.schemas import PolicyDocument
from shared.columnar import (
    column_rows,
    group_sum,
    insert_columns,
    object_column,
    update_columns,
)
from shared.heavy import in_thread


@dataclass
class Ranking:
    customers: int
    per_tier: dict[str, tuple[int, int]]  # tier -> (customers, metric in stored units)
    moves: dict[tuple[str | None, str], int]
    scored: Scored
    movers: Ints  # positions of the customers whose tier changes, best rank first
    # Per customer, the id of its latest assignment once the changes are numbered (the
    # movers' new ones; -1: none).
    history_ids: Ints | None = None

    def changed_rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """The history figures of the changed customers from `start` to `stop`, best rank
        first, a mapping each (what `explain_assignment` reads): simulate's sample."""
        at = self.movers[start:stop]
        return column_rows(TIER_HISTORY, self._history_columns(at), len(at))

    @cached_property
    def movers_by_key(self) -> Ints:
        """The changed customers' positions in customer key order: the order their
        history rows are numbered, written and announced in."""
        keys = self.scored.figures.customers["key"]
        return self.movers[np.argsort(keys[self.movers], kind="stable")]

    def number_changes(self, first_id: int) -> None:
        """Give the changed customers' new assignments the ids from `first_id` on, in the
        order their history rows are written (key order)."""
        ids = self.scored.figures.customers["history_id"].copy()
        ids[self.movers_by_key] = first_id + np.arange(len(self.movers), dtype=np.int64)
        self.history_ids = ids

    def history_columns(self, start: int, stop: int) -> dict[str, Any]:
        """The `tier_history` rows of the changed customers from `start` to `stop` (in
        key order, numbered), as arrays (no Python object per customer: a first ranking
        changes everyone), without what the ranking's row holds for all of them."""
        assert self.history_ids is not None, "number_changes first"
        at = self.movers_by_key[start:stop]
        before = self.scored.figures.customers["history_id"][at]
        columns = self._history_columns(at)
        del columns["customers"]  # the ranking's, as the rest all its rows share
        return {
            **columns,
            "id": self.history_ids[at],
            "previous_id": np.ma.masked_array(before, before < 0),
        }

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


async def rank(session: AsyncSession, policy: PolicyDocument, as_of: dt.datetime) -> Ranking:
    """Rank everyone known by `as_of`; return figures per tier, moves, and the changed
    customers."""
    figures = await load_figures(session, policy, as_of)
    return await in_thread(_rank_loaded, figures)


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
    moves = count_moves(previous[changed], scored.tier[changed], names, order)
    movers = np.flatnonzero(changed)
    movers = movers[np.lexsort((figures.customers["key"][movers], scored.bands.rank[movers]))]
    return Ranking(customers=count, per_tier=per_tier, moves=moves, scored=scored, movers=movers)


def count_moves(
    before: Ints, after: Ints, names: Sequence[str], order: Sequence[str]
) -> dict[tuple[str | None, str], int]:
    """How many customers moved from each tier to each other: `before` codes among `names`
    (-1: none), `after` among `order`, one pair per customer. One bincount over a code per
    pair: numpy's unique over the pairs sorted a million of them, a second of a first
    ranking."""
    width = len(order)
    codes = (before.astype(np.int64) + 1) * width + after
    counts = np.bincount(codes, minlength=(len(names) + 1) * width)
    return {
        (names[code // width - 1] if code >= width else None, order[code % width]): int(
            counts[code]
        )
        for code in np.flatnonzero(counts).tolist()
    }


SCORE_COLUMNS = ("rfm_r", "rfm_f", "rfm_m", "value_segment", "thermometer", "churn_risk")


def _same(stored: NDArray[Any], new: NDArray[Any]) -> Flags:
    if stored.dtype.kind == "f":
        return np.asarray((stored == new) | (np.isnan(stored) & np.isnan(new)), dtype=np.bool_)
    return np.asarray(stored == new, dtype=np.bool_)


async def store_scores(session: AsyncSession, ranking: Ranking) -> None:
    """Write each customer's tier, band, scores and latest assignment where they changed
    (a first row for customers that have none); the changes numbered first."""
    updates, inserts = await in_thread(_score_changes, ranking)
    for columns, existing in ((updates, True), (inserts, False)):
        count = len(columns["key"]) if columns else 0
        if not count:
            continue
        if existing:
            await update_columns(session, SCORES, "key", columns, count)
        else:
            await insert_columns(session, SCORES, columns, count)
    # Customers erased since are in no ranking now: their old value must not count when
    # a rank is counted from everyone's (see the tier view).
    erased = select(AGGREGATES.c.key).where(AGGREGATES.c.erased.is_(True))
    await session.execute(
        update(SCORES)
        .where(SCORES.c.ranked_value.is_not(None), SCORES.c.key.in_(erased))
        .values(ranked_value=None)
    )


def _score_changes(ranking: Ranking) -> tuple[dict[str, Any], dict[str, Any]]:
    """The score rows to update and to insert, as columns (empty when none). A changed
    tier always changes the row, so every new assignment's id is written."""
    assert ranking.history_ids is not None, "number_changes first"
    scored = ranking.scored
    stored = scored.figures.customers
    bands = scored.bands
    new = {**scored.scores, "band_tier": bands.band}
    standing = {"ranked_value": bands.value}
    # Stored tiers are codes among every tier name in use; the new ones in the policy's
    # order, which those names start with: the codes compare as they are.
    same = stored["tier"] == scored.tier
    for name in (*SCORE_COLUMNS, "band_tier", "at_risk"):
        same &= _same(stored[name], new[name])
    for name in STANDING:
        same &= stored[name] == standing[name]
    differ = np.flatnonzero(~same)
    # In key order: each row then goes at the end of the primary key's index, where rows
    # in the aggregates' order (which every update reshuffles) land all over it.
    differ = differ[np.argsort(stored["key"][differ], kind="stable")]
    has_row = stored["scored"][differ]
    found: list[dict[str, Any]] = []
    for at, existing in ((differ[has_row], True), (differ[~has_row], False)):
        columns = {
            "key": stored["key"][at],
            **score_columns(scored, at),
            **{name: figure[at] for name, figure in standing.items()},
            "history_id": np.ma.masked_array(ranking.history_ids[at], ranking.history_ids[at] < 0),
        }
        if existing:  # written by a ranking: no placement moment (NULL; a new row has none)
            columns["scored_at"] = np.full(len(at), None, dtype=object)
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
