"""Back-tests: a policy applied to everyone as of a past moment, kept as a report of its
own, never touching current tiers nor announcing anything.

Where the history after that moment exists (the moment plus the horizon has passed), the
report also says how the churn risk ranked who bought again within the horizon: its ROC
AUC beside that of days since the last purchase, on the same customers. So a team can
judge a policy on its own past before activating it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.churn import recency_days
from services.tiering.churn_fit import values_by_key
from services.tiering.models import Backtest, BacktestCustomer, TierPolicy
from services.tiering.ranking.figures import load_figures
from services.tiering.ranking.store import Ranking, rank, score_columns
from services.tiering.schemas import PolicyDocument
from shared.columnar import insert_columns
from shared.db import utcnow

BACKTEST_CUSTOMERS = BacktestCustomer.__table__


async def run_backtest(
    session: AsyncSession,
    policy: TierPolicy,
    as_of: dt.datetime,
    horizon_days: int,
    actor: str,
) -> Backtest:
    """Rank everyone under `policy` as of `as_of` and store the report (in the caller's
    transaction); current tiers and scores are not read for it nor written."""
    document = PolicyDocument.model_validate(policy.document)
    ranking = await rank(session, document, as_of)
    figures = ranking.scored.figures
    bought_again = None
    later = as_of + dt.timedelta(days=horizon_days)
    if later <= utcnow():
        after = await load_figures(session, document, later)
        _, last, _ = after.purchase_days()
        last_after = values_by_key(after.customers["key"], last, figures.customers["key"], -1)
        bought_again = last_after > figures.end
    backtest = Backtest(
        id=uuid.uuid4(),
        policy_id=policy.id,
        policy_version=policy.version,
        as_of=as_of,
        horizon_days=horizon_days,
        customers=figures.count,
        figures={
            "metric": document.bands.metric,
            "tiers": _tier_figures(ranking, document),
            "churn": _churn_figures(ranking, bought_again, later),
        },
        created_at=utcnow(),
        created_by=actor,
    )
    session.add(backtest)
    await session.flush()
    await _store_rows(session, backtest.id, ranking, bought_again)
    return backtest


def _tier_figures(ranking: Ranking, document: PolicyDocument) -> list[dict[str, Any]]:
    volume = sum(amount for _, amount in ranking.per_tier.values())
    return [
        {
            "tier": tier,
            "customers": ranking.per_tier.get(tier, (0, 0))[0],
            "revenue_share": round(ranking.per_tier.get(tier, (0, 0))[1] / volume, 4)
            if volume > 0
            else 0.0,
        }
        for tier in document.tier_order()
    ]


def _churn_figures(
    ranking: Ranking, bought_again: np.ndarray[Any, Any] | None, later: dt.datetime
) -> dict[str, Any]:
    """How the churn risk ranked who bought nothing within the horizon, beside recency."""
    figures = ranking.scored.figures
    if figures.policy.churn is None:
        return {"evaluated": False, "reason": "the policy has no churn score"}
    if bought_again is None:
        return {
            "evaluated": False,
            "reason": f"the horizon ends {later.isoformat()}: no later history to judge by yet",
        }
    risk = ranking.scored.scores["churn_risk"]
    scored = ~np.isnan(risk)
    churned = ~bought_again[scored]
    if churned.all() or not churned.any():
        return {
            "evaluated": False,
            "reason": "everyone scored bought again, or nobody did: no ranking to judge",
            "customers": int(scored.sum()),
        }
    from sklearn.metrics import roc_auc_score

    return {
        "evaluated": True,
        "customers": int(scored.sum()),
        "churned_share": round(float(churned.mean()), 4),
        "auc": round(float(roc_auc_score(churned, risk[scored])), 4),
        "recency_auc": round(float(roc_auc_score(churned, recency_days(figures)[scored])), 4),
    }


async def _store_rows(
    session: AsyncSession,
    backtest_id: uuid.UUID,
    ranking: Ranking,
    bought_again: np.ndarray[Any, Any] | None,
) -> None:
    figures, bands = ranking.scored.figures, ranking.scored.bands
    count = figures.count
    if not count:
        return
    at = np.arange(count)
    columns = {
        "backtest_id": backtest_id,
        "customer_key": figures.customers["key"],
        "customer_id": figures.customers["customer_id"],
        "rank": bands.rank,
        "value": bands.value,
        **score_columns(ranking.scored, at),
        "bought_again": np.ma.masked_array(np.zeros(count, dtype=np.bool_), True)
        if bought_again is None
        else bought_again,
    }
    await insert_columns(session, BACKTEST_CUSTOMERS, columns, count)
