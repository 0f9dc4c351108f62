"""The past never overwrites the present: a recompute as of a past moment only reports,
activation refuses one, and a back-test is a report of its own (paginated and as CSV),
judging the churn risk by who bought again within the horizon."""

from __future__ import annotations

import csv
import io
import uuid

import httpx

from tests.conftest import ADMIN, ANALYST
from tests.tiering.conftest import Feed, announced
from tests.tiering.test_scores import ago, recompute


async def tiers(client: httpx.AsyncClient, *customers: uuid.UUID) -> list[str | None]:
    found = []
    for customer in customers:
        view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
        found.append(view.json()["tier"])
    return found


def shop(feed: Feed) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A big buyer who goes on, a small one who goes on, and one who was big until 100
    days ago and has bought nothing since."""
    steady, small, gone = (feed.customer(ago(500)) for _ in range(3))
    for days in range(400, 0, -20):
        feed.purchase(steady, "1000", ago(days))
        feed.purchase(small, "10", ago(days))
        if days > 100:
            feed.purchase(gone, "3000", ago(days))
    return steady, small, gone


async def test_a_recompute_as_of_the_past_reports_and_changes_nothing(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = shop(feed)
    await feed.apply(as_one_batch=True)
    await recompute(tiering)
    now = await tiers(tiering, *customers)
    pending = len(await announced(tiering_db))
    past = await tiering.post("/v1/recompute", json={"as_of": ago(150)}, headers=ADMIN)
    assert past.status_code == 200, past.text
    assert past.json()["applied"] is False
    assert past.json()["customers"] == 3
    assert await tiers(tiering, *customers) == now
    assert len(await announced(tiering_db)) == pending
    future = await tiering.post("/v1/recompute", json={"as_of": ago(-30)}, headers=ADMIN)
    assert future.status_code == 422
    assert future.json()["errors"][0]["type"] == "future"


async def test_activation_refuses_a_past_moment_and_stays_as_it_was(
    tiering: httpx.AsyncClient,
) -> None:
    active = (await tiering.get("/v1/policies", headers=ADMIN)).json()["items"][0]
    draft = await tiering.post(
        "/v1/policies",
        json={"name": "draft", "document": active["document"]},
        headers=ANALYST,
    )
    refused = await tiering.post(
        f"/v1/policies/{draft.json()['id']}/activate", json={"as_of": ago(10)}, headers=ADMIN
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "as_of"
    after = await tiering.get(f"/v1/policies/{draft.json()['id']}", headers=ADMIN)
    assert after.json()["status"] == "draft"


async def test_a_backtest_is_a_report_of_its_own_with_the_churn_risk_judged(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    steady, small, gone = shop(feed)
    await feed.apply(as_one_batch=True)
    await recompute(tiering)
    now = await tiers(tiering, steady, small, gone)
    pending = len(await announced(tiering_db))

    created = await tiering.post(
        "/v1/backtests", json={"as_of": ago(120), "horizon_days": 90}, headers=ANALYST
    )
    assert created.status_code == 201, created.text
    report = created.json()
    assert created.headers["location"] == f"/v1/backtests/{report['id']}"
    assert (report["customers"], report["horizon_days"]) == (3, 90)
    # 120 days ago the one who left was the biggest: A; it bought nothing in the 90 after.
    assert report["tiers"][0] == {
        "tier": "A",
        "customers": 1,
        "revenue_share": 0.7481,
    }  # 45,000 of 60,150
    churn = report["churn"]
    assert churn["evaluated"] is True
    assert (churn["customers"], churn["churned_share"]) == (3, round(1 / 3, 4))
    assert 0 <= churn["auc"] <= 1 and 0 <= churn["recency_auc"] <= 1
    assert (await tiering.get(f"/v1/backtests/{report['id']}", headers=ADMIN)).json() == report

    first = (
        await tiering.get(
            f"/v1/backtests/{report['id']}/customers", params={"limit": 2}, headers=ANALYST
        )
    ).json()
    rest = (
        await tiering.get(
            f"/v1/backtests/{report['id']}/customers",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=ANALYST,
        )
    ).json()
    rows = first["items"] + rest["items"]
    assert rest["next_cursor"] is None
    assert [row["customer_id"] for row in rows] == [str(gone), str(steady), str(small)]
    assert rows[0]["tier"] == "A" and rows[0]["value"] == "45000.00"  # 15 of 3,000 in 365 days
    assert [row["bought_again"] for row in rows] == [False, True, True]

    exported = await tiering.get(f"/v1/backtests/{report['id']}/customers.csv", headers=ANALYST)
    assert exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert [line["customer_id"] for line in lines] == [row["customer_id"] for row in rows]
    assert lines[0]["bought_again"] == "False" and lines[0]["tier"] == "A"

    listed = (await tiering.get("/v1/backtests", headers=ANALYST)).json()
    assert [item["id"] for item in listed["items"]] == [report["id"]]
    assert await tiers(tiering, steady, small, gone) == now  # the present is untouched
    assert len(await announced(tiering_db)) == pending  # and nothing was announced


async def test_a_recent_backtest_cannot_judge_the_churn_risk_yet(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    shop(feed)
    await feed.apply(as_one_batch=True)
    report = (
        await tiering.post(
            "/v1/backtests", json={"as_of": ago(30), "horizon_days": 90}, headers=ADMIN
        )
    ).json()
    assert report["churn"]["evaluated"] is False
    assert "no later history to judge by yet" in report["churn"]["reason"]
    rows = (await tiering.get(f"/v1/backtests/{report['id']}/customers", headers=ADMIN)).json()
    assert {row["bought_again"] for row in rows["items"]} == {None}
    missing = await tiering.get(f"/v1/backtests/{uuid.uuid4()}", headers=ADMIN)
    assert missing.status_code == 404
