"""A tier follows a customer's events in the same batch: on a small install by ranking
everyone again, on a large one by placing the customer against the band edges of the
latest ranking, with a reason that says what it was measured against."""

from __future__ import annotations

import json

import httpx
import pytest

from services.tiering import service as tiering_service_module
from tests.conftest import ADMIN, query
from tests.tiering.conftest import Feed, announced
from tests.tiering.test_ranking import RECENT, recompute, tiers


async def test_a_first_purchase_gives_a_tier_in_the_same_batch(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    customer = feed.customer()
    feed.purchase(customer, "900000", RECENT)
    await feed.apply()
    view = (await tiering.get(f"/v1/customers/{customer}/tier", headers=ADMIN)).json()
    assert view["tier"] == "A"
    assert view["reasons"][0].startswith("A: revenue of 900000.00 over the last 365 days; the")
    # customer.created made it a known customer with no revenue (the rest tier) first.
    tiers_announced = [json.loads(e.payload)["data"]["tier"] for e in await announced(tiering_db)]
    assert tiers_announced == ["D", "A"]


async def test_a_large_install_places_customers_against_the_latest_band_edges(
    tiering_placing: httpx.AsyncClient, feed: Feed, tiering_db: str
) -> None:
    tiering = tiering_placing
    ranked = [feed.customer() for _ in range(5)]
    for customer, amount in zip(ranked, ["500", "200", "150", "100", "50"], strict=True):
        feed.purchase(customer, amount, RECENT)
    await feed.apply(batch_hook=False)
    outcome = await recompute(tiering)  # edges: A from 500, B from 200, C from 150
    assert await tiers(tiering, ranked) == ["A", "B", "C", "D", "D"]
    (edges,) = await query(tiering_db, "SELECT cutoffs FROM rankings")
    assert json.loads(edges.cutoffs) if isinstance(edges.cutoffs, str) else edges.cutoffs

    big, middle, small = feed.customer(), feed.customer(), feed.customer()
    feed.purchase(big, "900000", RECENT)
    feed.purchase(middle, "160", RECENT)
    feed.purchase(small, "10", RECENT)
    await feed.apply(as_one_batch=True)
    assert await tiers(tiering, [big, middle, small]) == ["A", "C", "D"]
    assert await tiers(tiering, ranked) == ["A", "B", "C", "D", "D"]  # nobody else moved
    moment = outcome["as_of"][:16].replace("T", " ")
    reasons = {
        customer: (await tiering.get(f"/v1/customers/{customer}/tier", headers=ADMIN)).json()
        for customer in (big, middle, small)
    }
    assert reasons[big]["reasons"] == [
        "A: revenue of 900000.00 over the last 365 days is at or above the A cut-off "
        f"500.00 of the ranking of {moment} UTC"
    ]
    assert reasons[middle]["reasons"][0].startswith("C: revenue of 160.00 over the last 365 days")
    assert "C cut-off 150.00" in reasons[middle]["reasons"][0]
    assert reasons[small]["reasons"] == [
        "D: revenue of 10.00 over the last 365 days is below every band's cut-off (the "
        f"lowest is 150.00) of the ranking of {moment} UTC"
    ]
    assert reasons[big]["scores"]["cutoff"] == "500.00"
    changed = {
        json.loads(e.payload)["customer_id"]: json.loads(e.payload)["data"]
        for e in await announced(tiering_db)
    }
    assert changed[str(big)]["reasons"] == reasons[big]["reasons"]
    # The next full ranking is the source of truth for shares: the big buyer now holds
    # over 80% of the revenue alone, so everyone else falls to the rest.
    again = await recompute(tiering)
    assert again["customers"] == 8
    assert await tiers(tiering, [big, *ranked, middle, small]) == ["A"] + ["D"] * 7


async def test_only_the_latest_rankings_are_kept_and_those_that_changed_tiers(
    tiering: httpx.AsyncClient, feed: Feed, tiering_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ranking that changed tiers stays: its history rows read what they share from it."""
    monkeypatch.setattr(tiering_service_module, "RANKINGS_KEPT", 2)
    feed.purchase(feed.customer(), "10", RECENT)
    await feed.apply(batch_hook=False)
    for _ in range(4):
        await recompute(tiering)  # the first changes the tier placed on purchase; the rest nothing
    rows = await query(tiering_db, "SELECT changes FROM rankings ORDER BY id")
    assert [row.changes for row in rows] == [1, 0, 0]
