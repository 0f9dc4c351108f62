"""Who sees which customers on tiering: the shared rule (shared.access) with tiering's own
projection of each customer's account manager from `customer.*` events."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import ADMIN, ANALYST, MANAGER
from tests.tiering.conftest import Feed
from tests.tiering.test_ranking import RECENT

EARLY, LATE = "2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z"


def managed_customer(feed: Feed, manager: str | None, when: str = EARLY) -> uuid.UUID:
    customer = uuid.uuid4()
    feed.add(
        customer,
        "customer.created",
        {"name": "x", "kind": "company", "account_manager": manager},
        when,
    )
    feed.purchase(customer, "100", RECENT)
    return customer


async def test_an_account_manager_sees_only_their_own_customers(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    mine, theirs, nobodys = (
        managed_customer(feed, "mia"),
        managed_customer(feed, "bob"),
        managed_customer(feed, None),
    )
    await feed.apply()
    assert (await tiering.get(f"/v1/customers/{mine}/tier", headers=MANAGER)).status_code == 200
    for hidden in (theirs, nobodys):
        response = await tiering.get(f"/v1/customers/{hidden}/tier", headers=MANAGER)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    listed = (await tiering.get("/v1/customers", headers=MANAGER)).json()["items"]
    assert [item["customer_id"] for item in listed] == [str(mine)]
    for wider in (ADMIN, ANALYST):
        everyone = (await tiering.get("/v1/customers", headers=wider)).json()["items"]
        assert {item["customer_id"] for item in everyone} == {str(mine), str(theirs), str(nobodys)}
        assert (await tiering.get(f"/v1/customers/{theirs}/tier", headers=wider)).status_code == 200


async def test_an_older_event_does_not_hand_the_customer_back(
    tiering: httpx.AsyncClient, feed: Feed
) -> None:
    """customer.updated (bob takes over) arrives before the older customer.created (mia)."""
    customer = uuid.uuid4()
    feed.add(customer, "customer.updated", {"account_manager": "bob"}, LATE)
    feed.add(
        customer,
        "customer.created",
        {"name": "x", "kind": "company", "account_manager": "mia"},
        EARLY,
    )
    await feed.apply()
    assert (await tiering.get(f"/v1/customers/{customer}/tier", headers=MANAGER)).status_code == 404
    feed.add(customer, "customer.updated", {"account_manager": "mia"}, "2026-11-03T08:00:00Z")
    await feed.apply()
    assert (await tiering.get(f"/v1/customers/{customer}/tier", headers=MANAGER)).status_code == 200
