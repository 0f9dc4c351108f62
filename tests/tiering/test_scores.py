"""RFM, value matrix, relationship thermometer and churn risk against hand-computed cases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, ANALYST
from tests.tiering.conftest import KEY_PARCEL_RULE, Feed, announced


def ago(days: int) -> str:
    """`days` before now: the moment the test runs, not the one the module was imported
    (the service scores as of its own now; a suite that passes midnight UTC moved every
    expected day count by one)."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def recompute(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/recompute", headers=ADMIN)
    assert response.status_code == 200, response.text


async def scores_of(client: httpx.AsyncClient, customer: uuid.UUID) -> dict[str, Any]:
    view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
    assert view.status_code == 200, view.text
    scores: dict[str, Any] = view.json()["scores"]
    return scores


async def activate(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    created = await client.post(
        "/v1/policies", json={"name": "scores", "document": document}, headers=ANALYST
    )
    assert created.status_code == 201, created.text
    activated = await client.post(f"/v1/policies/{created.json()['id']}/activate", headers=ADMIN)
    assert activated.status_code == 200, activated.text


async def test_rfm_quintiles(tiering: httpx.AsyncClient, feed: Feed) -> None:
    customers = [feed.customer() for _ in range(5)]
    # Customer n buys n+1 times, 10*(n+1) each, the last time (100 - 20n) days ago.
    for n, customer in enumerate(customers):
        for k in range(n + 1):
            feed.purchase(customer, str(10 * (n + 1)), ago(100 - 20 * n + k))
    twin = feed.customer()  # the same as the best customer: ties share a score
    for k in range(5):
        feed.purchase(twin, "50", ago(20 + k))
    await feed.apply()
    await recompute(tiering)
    codes = [(await scores_of(tiering, c))["rfm"]["code"] for c in [*customers, twin]]
    # Six customers: score = 1 + (5 * (rank - 1)) // 6, rank counted from the lowest.
    assert codes == ["111", "111", "222", "333", "444", "444"]


async def test_value_matrix(tiering: httpx.AsyncClient, feed: Feed) -> None:
    cases = {
        "high value": ("2000", "1800"),
        "medium value": ("2000", "500"),
        "sub-medium value": ("100", "100"),
        "low value": ("100", None),
    }
    made = {}
    for segment, (bought, paid) in cases.items():
        customer = feed.customer()
        feed.purchase(customer, bought, ago(30))
        if paid:
            feed.payment(customer, paid, ago(20))
        made[segment] = customer
    await feed.apply()
    await activate(
        tiering,
        {
            "bands": {"tiers": [{"name": "A", "share": 0.8}]},
            "value_matrix": {"sales_threshold": "1000", "collection_threshold": 0.8},
        },
    )
    for segment, customer in made.items():
        assert (await scores_of(tiering, customer))["value_matrix"] == segment


async def test_relationship_thermometer(tiering: httpx.AsyncClient, feed: Feed) -> None:
    warm, cold = feed.customer(), feed.customer()
    feed.add(warm, "customer.updated", {"relationship_level": "strategic_alliance"})
    for k in range(12):
        feed.add(
            warm,
            "interaction.logged",
            {
                "interaction_id": str(uuid.uuid4()),
                "kind": "visit",
                "at": ago(10 + k * 5),
                "by": "mia",
                "satisfaction": 5,
            },
        )
    feed.complaint(cold, "major", opened=ago(5), respond_by=ago(1), resolve_by=ago(0))
    await feed.apply()
    await recompute(tiering)
    # warm: 25*(1 - 10/180) + 25 + 20 + 15 + 15 = 98.6
    assert (await scores_of(tiering, warm))["thermometer"] == {"score": 99, "level": "ally"}
    # cold: no contact, neutral satisfaction (10), one open and recent complaint (15*0.4 = 6)
    assert (await scores_of(tiering, cold))["thermometer"] == {"score": 16, "level": "stranger"}


async def test_churn_risk_and_the_at_risk_list(tiering: httpx.AsyncClient, feed: Feed) -> None:
    regular, lapsed, unhappy, never = (feed.customer(ago(800)) for _ in range(4))
    for days in range(5, 701, 30):  # every 30 days, still buying
        feed.purchase(regular, "100", ago(days))
        feed.purchase(unhappy, "100", ago(days))
    for days in range(200, 701, 30):  # stopped 200 days ago
        feed.purchase(lapsed, "100", ago(days))
    feed.complaint(unhappy, "critical", opened=ago(3), respond_by=ago(1), resolve_by=ago(0))
    await feed.apply()
    await recompute(tiering)
    assert (await scores_of(tiering, regular))["churn"] == {"risk": 0.0, "at_risk": False}
    # drop 1 (0.35) + overdue: 200 days is 5.67 cycles of 30 late, 5.67 / 6.67 (0.35 * 0.85)
    # + silence (200 - 90) / 180 (0.15 * 0.611) = 0.739
    assert (await scores_of(tiering, lapsed))["churn"] == {"risk": 0.739, "at_risk": True}
    assert (await scores_of(tiering, unhappy))["churn"] == {"risk": 0.075, "at_risk": False}
    assert "churn" not in await scores_of(tiering, never)
    listed = (await tiering.get("/v1/customers", params={"at_risk": "true"}, headers=ADMIN)).json()[
        "items"
    ]
    assert [item["customer_id"] for item in listed] == [str(lapsed)]
    assert listed[0]["churn_risk"] == pytest.approx(0.7392, abs=1e-3)


async def test_rules_and_scores_follow_each_event_between_reranks(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    anchor, courier = feed.customer(), feed.customer()
    feed.purchase(anchor, "1000", ago(5))
    feed.purchase(courier, "1", ago(5))
    await feed.apply(batch_hook=False)  # tiers from the activation's re-rank
    await activate(
        tiering,
        {
            "bands": {"tiers": [{"name": "A", "share": 0.5}], "rest": "B"},
            "rules": [KEY_PARCEL_RULE],
        },
    )
    view = (await tiering.get(f"/v1/customers/{courier}/tier", headers=ADMIN)).json()
    assert view["tier"] == "B"
    events_before = len(await announced(tiering_db))

    # One event pushes the courier over the threshold: no re-rank needed to lift it.
    feed.purchase(courier, "1", ago(1), quantity=str(300 * 26 * 3))
    await feed.apply()
    view = (await tiering.get(f"/v1/customers/{courier}/tier", headers=ADMIN)).json()
    assert view["tier"] == "A"
    assert view["reasons"][0].startswith("B: revenue of 2.00")  # the figures of now
    assert view["reasons"][-1].startswith("lifted to A by rule 'key parcel account'")
    assert [h["tier"] for h in view["history"]] == ["A", "B"]
    changed = await announced(tiering_db)
    assert len(await announced(tiering_db)) == events_before + 1
    assert '"previous_tier":"B","tier":"A"' in changed[-1].payload

    # Scores that depend only on the customer move with its events too.
    feed.complaint(courier, "minor", opened=ago(0), respond_by=ago(0), resolve_by=ago(0))
    await feed.apply()
    churn = (await scores_of(tiering, courier))["churn"]
    assert churn["risk"] >= 0.075


async def test_a_batch_of_events_reassesses_each_customer_on_its_own_figures(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    anchor, heavy, light = feed.customer(), feed.customer(), feed.customer()
    for customer, amount in ((anchor, "1000"), (heavy, "1"), (light, "2")):
        feed.purchase(customer, amount, ago(5))
    await feed.apply()
    await activate(
        tiering,
        {
            "bands": {"tiers": [{"name": "A", "share": 0.5}], "rest": "B"},
            "rules": [KEY_PARCEL_RULE],
        },
    )
    events_before = len(await announced(tiering_db))

    # One poll: the heavy buyer crosses the threshold in two purchases, the light one
    # stays under it, the anchor complains. Each is judged on its own figures, once.
    feed.purchase(heavy, "1", ago(2), quantity=str(300 * 26 * 2))
    feed.purchase(heavy, "1", ago(1), quantity=str(300 * 26 * 2))
    feed.purchase(light, "1", ago(1), quantity="5")
    feed.complaint(anchor, "minor", opened=ago(0), respond_by=ago(0), resolve_by=ago(0))
    await feed.apply(as_one_batch=True)

    views = {
        name: (await tiering.get(f"/v1/customers/{customer}/tier", headers=ADMIN)).json()
        for name, customer in (("anchor", anchor), ("heavy", heavy), ("light", light))
    }
    tiers = [views[name]["tier"] for name in ("heavy", "light", "anchor")]
    assert tiers == ["A", "B", "A"]
    assert views["heavy"]["reasons"][-1].startswith("lifted to A by rule 'key parcel account'")
    # Both of its purchases counted: (1 + 2 x 15,600) / (90 / 30 x 26 working days).
    assert views["heavy"]["scores"]["rules"]["key parcel account"] == "400.01"
    assert not any(r.startswith("lifted") for r in views["light"]["reasons"])
    # The complaint reached the anchor's own scores in the same batch.
    assert views["anchor"]["scores"]["churn"]["risk"] >= 0.075
    changed = await announced(tiering_db)
    after = len(await announced(tiering_db))
    assert after == events_before + 1  # only the heavy buyer's tier changed, announced once
    assert f'"customer_id":"{heavy}"' in changed[-1].payload


async def test_the_rule_figures_shown_are_current_between_tier_changes(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    anchor, courier = feed.customer(), feed.customer()
    feed.purchase(anchor, "1000", ago(5))
    feed.purchase(courier, "1", ago(5), quantity=str(26 * 3 * 100))  # 100 a working day
    await feed.apply(batch_hook=False)  # tiers from the activation's re-rank
    await activate(
        tiering,
        {
            "bands": {"tiers": [{"name": "A", "share": 0.5}], "rest": "B"},
            "rules": [KEY_PARCEL_RULE],
        },
    )
    assert (await scores_of(tiering, courier))["rules"] == {"key parcel account": "100.00"}
    # Another 100 a working day: still under 300, the tier stays, the figure moves.
    feed.purchase(courier, "1", ago(2), quantity=str(26 * 3 * 100))
    await feed.apply()
    view = (await tiering.get(f"/v1/customers/{courier}/tier", headers=ADMIN)).json()
    assert view["tier"] == "B" and len(view["history"]) == 1
    assert view["scores"]["rules"] == {"key parcel account": "200.00"}
    assert view["history"][0]["scores"]["rules"] == {"key parcel account": "100.00"}
