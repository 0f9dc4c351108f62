"""The tier view is one moment: tier, scores, rank, share, reasons and aggregates all
belong to the latest full ranking or to the later event that placed the customer, and
the view says which and when."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from tests.conftest import ADMIN
from tests.tiering.conftest import Feed
from tests.tiering.test_ranking import RECENT, recompute


async def view_of(client: httpx.AsyncClient, customer: uuid.UUID) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def test_the_view_follows_a_later_ranking_and_a_later_event(
    tiering_placing: httpx.AsyncClient, feed: Feed
) -> None:
    client = tiering_placing
    top, middle, quiet = feed.customer(), feed.customer(), feed.customer()
    feed.purchase(top, "700", RECENT)
    feed.purchase(middle, "200", RECENT)
    feed.purchase(quiet, "100", RECENT)
    await feed.apply(batch_hook=False)
    first = await recompute(client)
    view = await view_of(client, quiet)
    assert view["tier"] == "D" and view["basis"] == "ranking"
    assert (view["scores"]["rank"], view["scores"]["customers"]) == (3, 3)
    # A newcomer ranks above `quiet`, whose tier stays D: no new assignment is written,
    # yet its rank, count, share and reasons are the new ranking's.
    newcomer = feed.customer()
    feed.purchase(newcomer, "150", RECENT)
    await feed.apply(batch_hook=False)
    second = await recompute(client)
    assert second["as_of"] != first["as_of"]
    view = await view_of(client, quiet)
    assert view["tier"] == "D" and len(view["history"]) == 1
    assert view["basis"] == "ranking" and view["as_of"] == second["as_of"]
    assert (view["scores"]["rank"], view["scores"]["customers"]) == (4, 4)
    assert view["scores"]["share_ahead"] == round(1050 / 1150, 4)
    assert view["reasons"] == [
        "D: revenue of 100.00 over the last 365 days; the customers ranked ahead hold 91.3% "
        "of the revenue, not under the 80% where the bands end (rank 4 of 4)"
    ]
    # A later purchase places the customer against that ranking's band edges: the view
    # is then of that moment, and shows no rank (only a full ranking gives one).
    before = dt.datetime.now(dt.UTC)
    feed.purchase(quiet, "5", RECENT)
    await feed.apply()
    view = await view_of(client, quiet)
    assert view["basis"] == "event"
    assert dt.datetime.fromisoformat(view["as_of"]) >= before
    assert "rank" not in view["scores"] and view["scores"]["value"] == "105.00"
    assert view["reasons"][0].startswith("D: revenue of 105.00 over the last 365 days is below")
    assert view["aggregates"]["revenue"] == "105.00"
    # The next ranking counts the rank among everyone then: an erased customer is gone.
    feed.add(top, "customer.erased", {})
    await feed.apply()
    third = await recompute(client)
    view = await view_of(client, quiet)
    assert view["basis"] == "ranking" and view["as_of"] == third["as_of"]
    assert (view["scores"]["rank"], view["scores"]["customers"]) == (3, 3)
