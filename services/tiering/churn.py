"""The learned churn risk: what it reads of a customer and how a fitted model turns that
into a risk (the chance of no purchase within the policy's horizon).

The model is a logistic regression (fitted by scikit-learn in `churn_fit.py`) kept as its
coefficients, so scoring a million customers is one matrix product here, with nothing
unpickled. The rule-based score (`ranking.customer_scores`) stays the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering import repository as repo
from services.tiering.schemas import PolicyDocument

if TYPE_CHECKING:
    from services.tiering.ranking.figures import Figures

Floats = NDArray[np.float64]
Flags = NDArray[np.bool_]

# What the model reads of each customer as of a moment; a stored model with other
# features is not applied (the rules are, until the next fit).
FEATURES = (
    "log_recency_days",
    "log_purchase_days",
    "log_tenure_days",
    "log_revenue",
    "log_cycles_since_last",
    "has_cycle",
    "recency_share_of_tenure",
    "log_recent_purchases",
    "log_recency_x_frequency",
    "open_complaints",
    "log_touches",
    "log_silence_days",
)


def churn_features(figures: Figures) -> tuple[Floats, Flags]:
    """One row of FEATURES per customer as of `figures.end`, and whether the customer
    has bought within the churn window (the others get no risk)."""
    churn = figures.policy.churn
    assert churn is not None
    end = figures.end
    first, last, days = figures.purchase_days(churn.history_days)
    bought = last >= 0
    recency = np.where(bought, end - last, 0).astype(np.float64)
    tenure = np.where(bought, end - first, 0).astype(np.float64)
    has_cycle = days >= 2
    cycle = np.where(has_cycle, (last - first) / np.maximum(days - 1, 1), 1.0)
    cycles_since = np.where(has_cycle, recency / np.maximum(cycle, 1.0), 0.0)
    revenue = np.maximum(figures.window_sum("revenue", churn.history_days), 0) / 100
    recent = figures.window_sum("purchases", churn.recent_days)
    last_contact = np.maximum(last, figures.touches["last_touch"])
    silence = np.where(bought, end - last_contact, 0)
    log_recency, log_days = np.log1p(recency), np.log1p(days)
    matrix = np.column_stack(
        [
            log_recency,
            log_days,
            np.log1p(tenure),
            np.log1p(revenue),
            np.log1p(cycles_since),
            has_cycle.astype(np.float64),
            recency / np.maximum(tenure, 1.0),
            np.log1p(np.maximum(recent, 0)),
            log_recency * log_days,
            figures.complaints["open_complaints"].astype(np.float64),
            np.log1p(figures.touches["touches"]),
            np.log1p(np.maximum(silence, 0)),
        ]
    )
    return matrix, bought


def recency_days(figures: Figures) -> Floats:
    """Days since the last purchase: the baseline a churn score must beat."""
    churn = figures.policy.churn
    assert churn is not None
    _, last, _ = figures.purchase_days(churn.history_days)
    return np.where(last >= 0, figures.end - last, 0).astype(np.float64)


@dataclass(frozen=True)
class ChurnModel:
    """A fitted logistic regression: standardise each feature, weigh, add, squash."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float

    def risk(self, matrix: Floats) -> Floats:
        """The chance of no purchase within the horizon, per row of `matrix`."""
        z = ((matrix - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.weights
        ) + self.intercept
        risk: Floats = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return risk

    def as_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> ChurnModel:
        return cls(
            features=tuple(stored["features"]),
            mean=tuple(stored["mean"]),
            scale=tuple(stored["scale"]),
            weights=tuple(stored["weights"]),
            intercept=float(stored["intercept"]),
        )


async def current_model(session: AsyncSession, policy: PolicyDocument) -> ChurnModel | None:
    """The model to score with under `policy`: the latest fit's, when it was used (ahead
    of recency), is for the policy's horizon and reads today's features; else None (the
    rule-based score applies)."""
    churn = policy.churn
    if churn is None or churn.method != "learned":
        return None
    latest = await repo.churn_fits.latest(session)
    if latest is None or not latest.used or latest.model is None:
        return None
    model = ChurnModel.from_json(latest.model)
    if latest.horizon_days != churn.horizon_days or model.features != FEATURES:
        return None
    return model


def learned_risk(figures: Figures, model: ChurnModel) -> tuple[Floats, Flags]:
    """Each customer's learned risk (and who has bought: the others get none)."""
    matrix, bought = churn_features(figures)
    return model.risk(matrix), bought
