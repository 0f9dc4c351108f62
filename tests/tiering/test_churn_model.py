"""The learned churn risk, on synthetic histories where the answer is known: fast buyers
(every 10 days) who stop at staggered moments, fast buyers who go on, and slow buyers
(every 80 days) who go on. Days since the last purchase alone mistakes a slow buyer's long
gap for churn; the model, which also reads each customer's own cycle, does not."""

from __future__ import annotations

import uuid

import httpx
import numpy as np

from tests.conftest import ADMIN, ANALYST
from tests.tiering.conftest import Feed
from tests.tiering.test_scores import ago, recompute, scores_of

PER_GROUP = 50
HISTORY_DAYS = 400


def history(feed: Feed) -> tuple[dict[str, list[uuid.UUID]], dict[uuid.UUID, int]]:
    """The three groups, their purchases fed (deterministic phases and stops), and each
    stopped customer's last purchase (days ago)."""
    groups: dict[str, list[uuid.UUID]] = {"going_on": [], "stopped": [], "slow": []}
    last: dict[uuid.UUID, int] = {}
    for n in range(PER_GROUP):
        going_on, stopped, slow = (feed.customer(ago(HISTORY_DAYS + 10)) for _ in range(3))
        groups["going_on"].append(going_on)
        groups["stopped"].append(stopped)
        groups["slow"].append(slow)
        phase = n % 10
        stop = 5 + (n * 7) % (HISTORY_DAYS - 100)  # days ago, spread over the history
        for days in range(HISTORY_DAYS - phase, 0, -10):
            feed.purchase(going_on, "100", ago(days))
            if days > stop:
                feed.purchase(stopped, "100", ago(days))
                last[stopped] = days
        for days in range(HISTORY_DAYS - (n * 3) % 80, 0, -80):
            feed.purchase(slow, "100", ago(days))
    return groups, last


async def test_the_model_learns_each_customers_cycle_and_is_used_once_ahead_of_recency(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    groups, last = history(feed)
    await feed.apply(as_one_batch=True)
    before = (await tiering.get("/v1/churn-model", headers=ANALYST)).json()
    assert (before["status"], before["fitted_at"]) == ("rules", None)
    assert "not fitted yet" in before["reason"]

    fitted = await tiering.post("/v1/churn-model/fit", headers=ADMIN)
    assert fitted.status_code == 200, fitted.text
    model = fitted.json()
    assert model["status"] == "learned", model
    assert (model["horizon_days"], model["label_days"]) == (90, 90)
    # Everyone had bought by the training moment (180 days ago) and the back-test's (90
    # days ago); in the back-test, the stopped whose last purchase is 90 days old or more
    # churned (bought nothing after it).
    assert (model["trained_on"], model["tested_on"]) == (3 * PER_GROUP, 3 * PER_GROUP)
    churned = sum(1 for days in last.values() if days >= 90)
    assert model["churned_share"] == churned / (3 * PER_GROUP)
    assert model["auc"] > 0.97
    assert model["auc"] > model["recency_auc"] + 0.03, model  # slow buyers fool recency
    assert {feature["name"] for feature in model["features"]} >= {"log_cycles_since_last"}
    assert model == (await tiering.get("/v1/churn-model", headers=ANALYST)).json()

    await recompute(tiering)
    risk = {
        name: np.array([(await scores_of(tiering, c))["churn"]["risk"] for c in customers])
        for name, customers in groups.items()
    }
    # A fast buyer 30+ days silent is gone; a slow buyer up to 80 days silent is not.
    long_stopped = risk["stopped"][[last[c] >= 30 for c in groups["stopped"]]]
    assert long_stopped.min() > risk["slow"].max()
    assert long_stopped.min() > risk["going_on"].max()
    assert risk["slow"].max() < 0.5 < long_stopped.min()  # the flag agrees


async def test_with_too_little_history_nothing_is_fitted_and_the_rules_stay(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    customer = feed.customer(ago(60))
    for days in (50, 30, 10):
        feed.purchase(customer, "100", ago(days))
    await feed.apply()
    rules = (await scores_of(tiering, customer))["churn"]
    fitted = (await tiering.post("/v1/churn-model/fit", headers=ADMIN)).json()
    assert fitted["status"] == "rules"
    assert fitted["reason"].startswith("too little history: 50 days of purchases")
    assert (fitted["auc"], fitted["recency_auc"], fitted["features"]) == (None, None, [])
    await recompute(tiering)
    assert (await scores_of(tiering, customer))["churn"] == rules


async def test_too_few_customers_is_said_and_an_analyst_may_not_fit(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    for _ in range(5):
        customer = feed.customer(ago(HISTORY_DAYS))
        for days in range(HISTORY_DAYS - 5, 0, -20):
            feed.purchase(customer, "100", ago(days))
    await feed.apply(as_one_batch=True)
    refused = await tiering.post("/v1/churn-model/fit", headers=ANALYST)
    assert refused.status_code == 403
    fitted = (await tiering.post("/v1/churn-model/fit", headers=ADMIN)).json()
    assert fitted["status"] == "rules"
    assert fitted["reason"].startswith("too few customers to learn from: 5 and 5")
