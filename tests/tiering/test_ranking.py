"""Ranking methods against hand-computed cases, explanations, and re-rank behaviour."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest

from services.tiering.ranking import store
from services.tiering.ranking.compute import _tie_ranks
from services.tiering.ranking.explain import RankedCustomer, explain, explain_assignment
from services.tiering.schemas import PolicyDocument
from shared.columnar import insert_columns
from tests.conftest import ADMIN, ANALYST, query
from tests.tiering.conftest import KEY_PARCEL_RULE, Feed, announced

RECENT = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def tiers(client: httpx.AsyncClient, customers: list[uuid.UUID]) -> list[str | None]:
    found = []
    for customer in customers:
        view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
        found.append(view.json()["tier"])
    return found


async def recompute(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/recompute", json=body or None, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def new_policy(
    client: httpx.AsyncClient, document: dict[str, Any], name: str = "custom"
) -> dict[str, Any]:
    response = await client.post(
        "/v1/policies", json={"name": name, "document": document}, headers=ANALYST
    )
    assert response.status_code == 201, response.text
    policy: dict[str, Any] = response.json()
    return policy


async def test_default_policy_ranks_by_cumulative_share_of_revenue(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = [feed.customer() for _ in range(6)]
    for customer, amount in zip(customers, ["500", "200", "150", "100", "50"], strict=False):
        feed.purchase(customer, amount, RECENT)
    await feed.apply(batch_hook=False)  # the re-rank below gives the tiers
    outcome = await recompute(tiering)
    # 500 is the first half of 1000; 200 the next 20%; 150 the next 10%; the rest D.
    assert await tiers(tiering, customers) == ["A", "B", "C", "D", "D", "D"]
    assert outcome["changed"] == 6 and outcome["moves"] == {
        "none->A": 1,
        "none->B": 1,
        "none->C": 1,
        "none->D": 3,
    }
    assert [(t["tier"], t["customers"], t["revenue_share"]) for t in outcome["tiers"]] == [
        ("A", 1, 0.5),
        ("B", 1, 0.2),
        ("C", 1, 0.15),
        ("D", 3, 0.15),
    ]
    view = (await tiering.get(f"/v1/customers/{customers[0]}/tier", headers=ADMIN)).json()
    # The words give the figures the band compared: the share held by those ranked ahead
    # against the share where the band ends.
    assert view["reasons"] == [
        "A: revenue of 500.00 over the last 365 days; the customers ranked ahead hold 0% of "
        "the revenue, under the 50% where A ends (rank 1 of 6)"
    ]
    third = (await tiering.get(f"/v1/customers/{customers[2]}/tier", headers=ADMIN)).json()
    assert third["reasons"] == [
        "C: revenue of 150.00 over the last 365 days; the customers ranked ahead hold 70% of "
        "the revenue, under the 80% where C ends (rank 3 of 6)"
    ]
    assert third["scores"]["share_ahead"] == 0.7 and third["scores"]["cumulative_share"] == 0.85
    assert view["scores"]["rank"] == 1 and view["scores"]["value"] == "500.00"
    assert view["history"][0]["tier"] == "A" and view["history"][0]["previous_tier"] is None
    quiet = (await tiering.get(f"/v1/customers/{customers[5]}/tier", headers=ADMIN)).json()
    assert quiet["reasons"] == ["D: no revenue over the last 365 days"]
    rest = (await tiering.get(f"/v1/customers/{customers[3]}/tier", headers=ADMIN)).json()
    assert rest["reasons"] == [
        "D: revenue of 100.00 over the last 365 days; the customers ranked ahead hold 85% of "
        "the revenue, not under the 80% where the bands end (rank 4 of 6)"
    ]
    events = await announced(tiering_db)
    assert len(events) == 6


async def test_ties_share_a_tier_and_edge_cases(tiering: httpx.AsyncClient, feed: Feed) -> None:
    top, tie_a, tie_b = feed.customer(), feed.customer(), feed.customer()
    feed.purchase(top, "400", RECENT)
    feed.purchase(tie_a, "300", RECENT)
    feed.purchase(tie_b, "300", RECENT)
    refunder, stale = feed.customer(), feed.customer()
    feed.purchase(refunder, "100", RECENT)
    feed.purchase(refunder, "-100", RECENT)  # a full refund: nothing bought
    feed.purchase(stale, "9999", OLD)  # outside the 365-day window
    await feed.apply()
    await recompute(tiering)
    # Both 300s have 400 (40%) before them: peers are never split across a boundary.
    assert await tiers(tiering, [top, tie_a, tie_b, refunder, stale]) == ["A", "A", "A", "D", "D"]


async def test_single_customer_and_all_equal(tiering: httpx.AsyncClient, feed: Feed) -> None:
    only = feed.customer()
    feed.purchase(only, "10", RECENT)
    await feed.apply()
    await recompute(tiering)
    assert await tiers(tiering, [only]) == ["A"]
    equal = [feed.customer() for _ in range(3)]
    for customer in equal:
        feed.purchase(customer, "10", RECENT)
    await feed.apply()
    await recompute(tiering)
    # With equal revenue nothing tells them apart: all share the top band.
    assert await tiers(tiering, [only, *equal]) == ["A"] * 4


async def test_top_share_of_customers(tiering: httpx.AsyncClient, feed: Feed) -> None:
    customers = [feed.customer() for _ in range(10)]
    for n, customer in enumerate(customers):
        feed.purchase(customer, str(100 - n * 10), RECENT)
    await feed.apply()
    policy = await new_policy(
        tiering,
        {
            "bands": {
                "method": "top_share",
                "tiers": [{"name": "gold", "share": 0.2}, {"name": "silver", "share": 0.3}],
                "rest": "bronze",
            }
        },
    )
    response = await tiering.post(f"/v1/policies/{policy['id']}/activate", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert await tiers(tiering, customers) == ["gold"] * 2 + ["silver"] * 3 + ["bronze"] * 5
    view = (await tiering.get(f"/v1/customers/{customers[1]}/tier", headers=ADMIN)).json()
    assert view["reasons"] == [
        "gold: in the top 20% of customers by revenue over the last 365 days (rank 2 of 10)"
    ]


async def test_threshold_rules_lift_and_cap_with_reasons(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    big, parcels, late_payer = feed.customer(), feed.customer(), feed.customer()
    feed.purchase(big, "1000", RECENT)
    feed.purchase(late_payer, "900", RECENT)
    feed.payment(late_payer, "100", RECENT)
    # 300 parcels a working day for three months of 26 working days, plus one.
    feed.purchase(parcels, "1", RECENT, quantity=str(300 * 26 * 3 + 1))
    feed.payment(parcels, "1", RECENT)  # pays in full: the cap rule leaves it alone
    await feed.apply()
    policy = await new_policy(
        tiering,
        {
            "bands": {
                "tiers": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.3}],
                "rest": "C",
            },
            "rules": [
                KEY_PARCEL_RULE,
                {
                    "name": "pays late",
                    "metric": "collection_ratio",
                    "window_days": 365,
                    "op": "<",
                    "value": "0.5",
                    "max_tier": "B",
                },
            ],
        },
    )
    await tiering.post(f"/v1/policies/{policy['id']}/activate", headers=ADMIN)
    # Bands: 1000 -> A, 900 -> B (prior 1000 of 1901 >= 50%), parcels (1.00) -> C.
    assert await tiers(tiering, [big, late_payer, parcels]) == ["B", "B", "A"]
    lifted = (await tiering.get(f"/v1/customers/{parcels}/tier", headers=ADMIN)).json()
    assert lifted["reasons"][-1] == (
        "lifted to A by rule 'key parcel account': average daily quantity over the last "
        "90 days is 300.01, counting 26 working days a month (> 300)"
    )
    capped = (await tiering.get(f"/v1/customers/{big}/tier", headers=ADMIN)).json()
    assert capped["reasons"][-1] == (
        "capped at B by rule 'pays late': collection ratio over the last 365 days is 0.000 (< 0.5)"
    )


async def test_rerank_with_same_data_changes_nothing_and_emits_nothing(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = [feed.customer() for _ in range(4)]
    for n, customer in enumerate(customers):
        feed.purchase(customer, str(10**n), RECENT)
    await feed.apply(batch_hook=False)  # the re-rank below gives the tiers
    first = await recompute(tiering)
    assert first["changed"] == 4
    counts = "SELECT count(*) AS h FROM tier_history"
    before = (await query(tiering_db, counts), len(await announced(tiering_db)))
    assert before[1] == 4
    second = await recompute(tiering)
    assert second["changed"] == 0 and second["moves"] == {} and second["sample"] == []
    assert (await query(tiering_db, counts), len(await announced(tiering_db))) == before


async def test_simulate_applies_nothing(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = [feed.customer() for _ in range(5)]
    for n, customer in enumerate(customers):
        feed.purchase(customer, str((n + 1) * 100), RECENT)
    await feed.apply()
    await recompute(tiering)
    before = await tiers(tiering, customers)
    events = len(await announced(tiering_db))
    policy = await new_policy(
        tiering, {"bands": {"tiers": [{"name": "A", "share": 0.9}], "rest": "D"}}
    )
    response = await tiering.post(f"/v1/policies/{policy['id']}/simulate", headers=ANALYST)
    assert response.status_code == 200, response.text
    outcome = response.json()
    # Now (default): 500, 400 -> A; 300 (900 before it of 1500: 60%) -> B; 200 (1200 before
    # it: 80%, not under 80%) and 100 -> D. Under A = 90%: 300 and 200 move to A.
    assert before == ["D", "D", "B", "A", "A"]
    assert outcome["moves"] == {"B->A": 1, "D->A": 1}
    assert {m["to_tier"] for m in outcome["sample"]} == {"A"}
    assert outcome["sample"][0]["reasons"][0].startswith("A: revenue of")
    assert await tiers(tiering, customers) == before
    assert len(await announced(tiering_db)) == events
    status = (await tiering.get(f"/v1/policies/{policy['id']}", headers=ADMIN)).json()["status"]
    assert status == "draft"


async def test_as_of_sees_only_history_up_to_it(tiering: httpx.AsyncClient, feed: Feed) -> None:
    early, late = feed.customer("2026-01-01T00:00:00Z"), feed.customer("2026-01-01T00:00:00Z")
    newcomer = feed.customer("2026-10-15T00:00:00Z")
    feed.purchase(early, "100", "2026-08-01T00:00:00Z")
    feed.purchase(late, "1000", "2026-10-20T00:00:00Z")
    feed.purchase(newcomer, "5000", "2026-10-20T00:00:00Z")
    await feed.apply(batch_hook=False)  # the re-rank below gives the tiers
    policy = (await tiering.get("/v1/policies", headers=ADMIN)).json()["items"][0]
    simulated = (
        await tiering.post(
            f"/v1/policies/{policy['id']}/simulate",
            json={"as_of": "2026-09-30T00:00:00Z"},
            headers=ANALYST,
        )
    ).json()
    assert simulated["customers"] == 2  # the newcomer did not exist yet
    assert {(m["customer_id"], m["to_tier"]) for m in simulated["sample"]} == {
        (str(early), "A"),
        (str(late), "D"),
    }
    bad = await tiering.post(
        f"/v1/policies/{policy['id']}/simulate",
        json={"as_of": "2026-09-30T00:00:00"},
        headers=ANALYST,
    )
    assert bad.status_code == 422


async def test_summary_shows_the_80_20(tiering: httpx.AsyncClient, feed: Feed) -> None:
    customers = [feed.customer() for _ in range(10)]
    feed.purchase(customers[0], "800", RECENT)
    feed.payment(customers[0], "400", RECENT)
    for customer in customers[1:]:
        feed.purchase(customer, "20", RECENT)
    await feed.apply()
    await recompute(tiering)
    summary = (await tiering.get("/v1/tiers/summary", headers=ANALYST)).json()
    assert summary["total_revenue"] == "980.00"
    assert summary["top_20_percent_revenue_share"] == round(820 / 980, 4)
    by_tier = {t["tier"]: t for t in summary["tiers"]}
    assert (by_tier["A"]["customers"], by_tier["A"]["collection_ratio"]) == (1, 0.5)
    assert by_tier["A"]["revenue_share"] == round(800 / 980, 4)
    assert sum(t["customers"] for t in summary["tiers"]) == 10
    listed = (await tiering.get("/v1/customers", params={"tier": "A"}, headers=ADMIN)).json()
    assert [item["customer_id"] for item in listed["items"]] == [str(customers[0])]


def test_tie_ranks_count_smaller_and_smaller_or_equal_values() -> None:
    values = np.array([5, 1, 5, 3, 0, 5, 3], dtype=np.int64)
    ascending, below, below_or_equal = _tie_ranks(values)
    assert ascending.tolist() == [0, 1, 3, 3, 5, 5, 5]
    assert below.tolist() == [4, 1, 4, 2, 0, 4, 2]
    assert below_or_equal.tolist() == [7, 2, 7, 4, 1, 7, 4]
    empty = _tie_ranks(np.array([], dtype=np.int64))
    assert [part.size for part in empty] == [0, 0, 0]


def test_a_change_without_band_figures_is_explained_by_its_rules() -> None:
    """A change after events takes its band figures from the customer's current
    assignment; with none to take, its reasons are the rules' alone (never an error that
    would stop the tier.changed feed)."""
    policy = PolicyDocument.model_validate(
        {
            "bands": {"tiers": [{"name": "A", "share": 0.5}], "rest": "B"},
            "rules": [KEY_PARCEL_RULE],
        }
    )
    row = {
        "reasons": None,
        "scores": None,
        "customer_id": uuid.uuid4(),
        "customer_key": 1,
        "previous_tier": "B",
        "tier": "A",
        "band_tier": "B",
        "value": None,
        "rank": None,
        "customers": None,
        "cumulative_share": None,
        "rule_values": {"key parcel account": "301.50"},
        "rules_fired": [0],
        "rfm_r": None,
        "rfm_f": None,
        "rfm_m": None,
        "value_segment": "high",
        "thermometer": None,
        "churn_risk": None,
        "at_risk": False,
    }
    figures, reasons = explain_assignment(row, policy)
    assert reasons == [
        "lifted to A by rule 'key parcel account': average daily quantity over the last 90 "
        "days is 301.50, counting 26 working days a month (> 300)"
    ]
    assert figures == {
        "band_tier": "B",
        "rules": {"key parcel account": "301.50"},
        "value_matrix": "high value",
    }


async def test_erased_customers_leave_rankings_summary_and_announcements(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = [feed.customer() for _ in range(4)]
    for customer, amount in zip(customers, ["1000", "100", "10", "1"], strict=True):
        feed.purchase(customer, amount, RECENT)
    await feed.apply(batch_hook=False)
    assert (await recompute(tiering))["customers"] == 4
    erased = customers[0]
    before = len(await announced(tiering_db))
    feed.events = []
    feed.add(erased, "customer.erased", {})
    feed.purchase(erased, "5000", RECENT)  # a late event about it changes no tier
    await feed.apply()  # (a small install: the events re-rank everyone)
    assert (await recompute(tiering))["customers"] == 3
    # The next one up takes the top tier; nothing is announced about the erased customer.
    new = (await announced(tiering_db))[before:]
    assert new and all(event.message_key != str(erased) for event in new)
    summary = (await tiering.get("/v1/tiers/summary", headers=ANALYST)).json()
    assert sum(t["customers"] for t in summary["tiers"]) == 3
    assert summary["total_revenue"] == "111.00"
    gone = await tiering.get(f"/v1/customers/{erased}/tier", headers=ADMIN)
    assert gone.status_code == 410  # no last tier shown for an erased customer, as on profile
    assert gone.headers["content-type"] == "application/problem+json"
    listed = (await tiering.get("/v1/customers", headers=ADMIN)).json()["items"]
    assert str(erased) not in {item["customer_id"] for item in listed}


async def test_events_about_an_erased_customer_place_it_nowhere(
    tiering_placing: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customers = [feed.customer() for _ in range(3)]
    for customer, amount in zip(customers, ["100", "10", "1"], strict=True):
        feed.purchase(customer, amount, RECENT)
    await feed.apply(batch_hook=False)
    await recompute(tiering_placing)
    before = len(await announced(tiering_db))
    feed.events = []
    feed.add(customers[2], "customer.erased", {})
    feed.purchase(customers[2], "5000", RECENT)  # placed, it would be an A
    await feed.apply()
    assert (await announced(tiering_db))[before:] == []


def test_a_cumulative_share_is_never_rounded_up() -> None:
    """0.9929 of the revenue is 99.2% in words, not 100%."""
    policy = PolicyDocument.model_validate(
        {"bands": {"tiers": [{"name": "A", "share": 0.995}], "rest": "B"}}
    )
    customer = RankedCustomer(
        customer_id=uuid.uuid4(),
        key=1,
        previous_tier=None,
        tier="A",
        band_tier="A",
        value=Decimal("10.00"),
        rank=7,
        customers=8,
        cumulative_share=0.9929,
    )
    (reason,) = explain(customer, policy)
    assert reason.endswith("(cumulative share 99.2%)"), reason
    customer.share_ahead = 0.99499
    (reason,) = explain(customer, policy)
    assert "ranked ahead hold 99.4% of the revenue, under the 99.5% where A ends" in reason


async def test_a_customers_history_follows_rankings_and_events_latest_first(
    tiering_placing: httpx.AsyncClient, feed: Feed
) -> None:
    tiering = tiering_placing
    small, big = feed.customer(), feed.customer()
    feed.purchase(small, "300", RECENT)
    feed.purchase(big, "100", RECENT)
    await feed.apply(batch_hook=False)
    await recompute(tiering)  # small A; big C (the 75% ahead of it is past B's 70%)
    feed.purchase(big, "1000", RECENT)
    await feed.apply()  # placed against the A cut-off at once
    await recompute(tiering)  # big stays A; small C (78.6% ahead)
    feed.purchase(small, "5000", RECENT)
    await feed.apply()  # small placed in A
    await recompute(tiering)  # small stays A; big D (82.8% ahead)

    for customer, expected in ((small, ["A", "C", "A"]), (big, ["D", "A", "C"])):
        view = (await tiering.get(f"/v1/customers/{customer}/tier", headers=ADMIN)).json()
        history = view["history"]
        assert [entry["tier"] for entry in history] == expected
        # Each entry starts from the tier of the one before it.
        assert [entry["previous_tier"] for entry in history] == [*expected[1:], None]
    listed = (await tiering.get("/v1/customers", params={"tier": "D"}, headers=ADMIN)).json()
    assert [item["customer_id"] for item in listed["items"]] == [str(big)]
    assert listed["items"][0]["reasons"] == view["history"][0]["reasons"]


async def test_score_rows_are_written_in_key_order_whatever_order_customers_are_read_in(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each new row then goes at the end of the primary key's index: rows in the
    aggregates' order, which updates reshuffle, cost a million-customer first ranking
    seconds of inserts all over it."""
    customers = [feed.customer() for _ in range(6)]
    for n, customer in enumerate(customers):
        feed.purchase(customer, str(100 * (n + 1)), RECENT)
    await feed.apply(batch_hook=False)
    # Updated rows move (PostgreSQL writes a new version after the others).
    await query(tiering_db, "UPDATE customer_aggregates SET known = known WHERE key IN (1, 3)")
    read_order = [row.key for row in await query(tiering_db, "SELECT key FROM customer_aggregates")]
    if "postgresql" in tiering_db:
        assert read_order != sorted(read_order)  # what the ranking reads them in
    written: list[list[int]] = []

    async def capture(session: Any, table: Any, columns: dict[str, Any], count: int) -> None:
        written.append(list(columns["key"]))
        await insert_columns(session, table, columns, count)

    monkeypatch.setattr(store, "insert_columns", capture)
    await recompute(tiering)
    assert written == [sorted(read_order)]
