"""Fitting the churn model on the customer base's own history, and back-testing it.

Two moments a label window apart are taken from the past: features as of the earlier
one, labelled by whether each customer bought in the window after it, train the model;
the later one, labelled the same way up to now, tests it (out of time, as it will be
used). The AUC of days-since-the-last-purchase on the same test is reported beside it,
and the learned risk is used only when it is ahead. The model then applied is fitted
again on the later moment, the freshest labels there are.

The label window is the policy's horizon, or a third of the history while the history
is shorter than three horizons (say so in `label_days`); under four weeks, or with too
few customers on either side, nothing is fitted and the rules stay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.churn import FEATURES, ChurnModel, churn_features, recency_days
from services.tiering.models import ChurnModelFit, DailyActivity, epoch_day
from services.tiering.ranking.figures import Figures, load_figures
from services.tiering.schemas import PolicyDocument

MIN_LABEL_DAYS = 28
MIN_CUSTOMERS = 100  # in each of the training and the test set
MIN_EACH_SIDE = 10  # customers who bought again, and who did not, in each set


@dataclass(frozen=True)
class LabelledSet:
    """Customers who had bought by a moment: their features, recency, and whether they
    bought nothing in the label window after it (churned)."""

    features: NDArray[np.float64]
    recency: NDArray[np.float64]
    churned: NDArray[np.bool_]

    @property
    def size(self) -> int:
        return len(self.churned)

    def sides(self) -> int:
        """The smaller of the two sides (churned, stayed)."""
        churned = int(self.churned.sum())
        return min(churned, self.size - churned)


def labelled(at: Figures, later: Figures) -> LabelledSet:
    """`at`'s customers with a purchase, labelled by `later` (a label window on)."""
    features, bought = churn_features(at)
    _, later_last, _ = later.purchase_days()
    last_after = values_by_key(later.customers["key"], later_last, at.customers["key"], missing=-1)
    churned = last_after <= at.end
    return LabelledSet(features[bought], recency_days(at)[bought], churned[bought])


def values_by_key(
    keys: NDArray[np.int64], values: NDArray[np.int64], wanted: NDArray[np.int64], missing: int
) -> NDArray[np.int64]:
    """`values` (one per key) for the `wanted` keys, `missing` for a key not there."""
    if len(keys) == 0:
        return np.full(len(wanted), missing, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    position = np.minimum(np.searchsorted(ordered, wanted), len(keys) - 1)
    found = ordered[position] == wanted
    return np.where(found, values[order][position], missing)


async def fit_churn_model(
    session: AsyncSession, policy: PolicyDocument, now: dt.datetime
) -> ChurnModelFit:
    """Fit and back-test the churn model as of `now`; the row to store (not added)."""
    churn = policy.churn
    horizon = churn.horizon_days if churn else 0
    fit = ChurnModelFit(
        fitted_at=now,
        horizon_days=horizon,
        label_days=None,
        trained_on=0,
        tested_on=0,
        used=False,
    )
    if churn is None:
        fit.reason = "the active policy has no churn score"
        return fit
    first_day = (
        await session.execute(
            select(func.min(DailyActivity.day)).where(DailyActivity.purchases > 0)
        )
    ).scalar()
    history = epoch_day(now) - first_day if first_day is not None else 0
    label_days = min(horizon, history // 3)
    fit.label_days = label_days
    if label_days < MIN_LABEL_DAYS:
        fit.reason = (
            f"too little history: {history} days of purchases, and a back-test needs three "
            f"label windows of at least {MIN_LABEL_DAYS} days"
        )
        return fit
    window = dt.timedelta(days=label_days)
    latest = await load_figures(session, policy, now)
    test_at = await load_figures(session, policy, now - window)
    train_at = await load_figures(session, policy, now - 2 * window)
    train, test = labelled(train_at, test_at), labelled(test_at, latest)
    fit.trained_on, fit.tested_on = train.size, test.size
    if min(train.size, test.size) < MIN_CUSTOMERS or min(train.sides(), test.sides()) < (
        MIN_EACH_SIDE
    ):
        fit.reason = (
            f"too few customers to learn from: {train.size} and {test.size} with a purchase "
            f"(at least {MIN_CUSTOMERS} each, {MIN_EACH_SIDE} who bought again and "
            f"{MIN_EACH_SIDE} who did not)"
        )
        return fit
    model, auc, recency_auc = await asyncio.to_thread(_fit_and_test, train, test)
    fit.churned_share = float(test.churned.mean())
    fit.auc, fit.recency_auc = round(auc, 4), round(recency_auc, 4)
    fit.model = model.as_json()
    fit.used = auc > recency_auc
    if not fit.used:
        fit.reason = (
            f"behind days since the last purchase on the back-test ({auc:.3f} against "
            f"{recency_auc:.3f}): the rule-based score is kept"
        )
    return fit


def _fit_and_test(train: LabelledSet, test: LabelledSet) -> tuple[ChurnModel, float, float]:
    """CPU work, off the event loop: fit on `train`, score `test`, fit again on `test`."""
    from sklearn.metrics import roc_auc_score

    tested = _fitted(train)
    auc = float(roc_auc_score(test.churned, tested.risk(test.features)))
    recency_auc = float(roc_auc_score(test.churned, test.recency))
    return _fitted(test), auc, recency_auc


def _fitted(data: LabelledSet) -> ChurnModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(data.features)
    regression = LogisticRegression(max_iter=2000).fit(
        scaler.transform(data.features), data.churned
    )
    return ChurnModel(
        features=FEATURES,
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scaler.scale_),
        weights=tuple(float(v) for v in regression.coef_[0]),
        intercept=float(regression.intercept_[0]),
    )
