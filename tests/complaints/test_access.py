"""Who sees which complaints: account managers their own customers', agents what they
received or work on, analysts figures without free text about people; roles per route."""

from __future__ import annotations

import httpx

from tests.complaints.conftest import WALL_CLOCK_POLICY, Events, move, open_complaint
from tests.conftest import ADMIN, AGENT, ANALYST, MANAGER, OTHER_AGENT


async def test_account_managers_see_their_own_customers_complaints(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    mine = await events.customer("mia")
    theirs = await events.customer("max")
    own = await open_complaint(complaints, mine, AGENT)
    other = await open_complaint(complaints, theirs, AGENT)
    listed = (await complaints.get("/v1/complaints", headers=MANAGER)).json()["items"]
    assert [item["id"] for item in listed] == [own["id"]]
    assert (
        await complaints.get(f"/v1/complaints/{other['id']}", headers=MANAGER)
    ).status_code == 404
    moved = await move(complaints, str(other["id"]), MANAGER, "judged")
    assert moved.status_code == 404
    # Nor may they record a complaint against another manager's customer.
    refused = await complaints.post(
        "/v1/complaints",
        json={"customer_id": str(theirs), "channel": "phone", "description": "x"},
        headers=MANAGER,
    )
    assert refused.status_code == 404
    # When the customer moves to them, so do its complaints.
    await events.send(theirs, "customer.updated", {"account_manager": "mia"})
    assert (
        await complaints.get(f"/v1/complaints/{other['id']}", headers=MANAGER)
    ).status_code == 200


async def test_agents_see_what_they_received_or_work_on(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer()
    by_ann = await open_complaint(complaints, customer, AGENT)
    by_bob = await open_complaint(complaints, customer, OTHER_AGENT)
    listed = (await complaints.get("/v1/complaints", headers=AGENT)).json()["items"]
    assert [item["id"] for item in listed] == [by_ann["id"]]
    assert (
        await complaints.get(f"/v1/complaints/{by_bob['id']}", headers=AGENT)
    ).status_code == 404
    await complaints.post(
        f"/v1/complaints/{by_bob['id']}/assignment", json={"assignee": "ann"}, headers=OTHER_AGENT
    )
    assert (
        await complaints.get(f"/v1/complaints/{by_bob['id']}", headers=AGENT)
    ).status_code == 200
    # Only an admin records a complaint in someone else's name.
    body = {"customer_id": str(customer), "channel": "phone", "description": "x"}
    forged = await complaints.post(
        "/v1/complaints", json={**body, "received_by": "bob"}, headers=AGENT
    )
    assert forged.status_code == 403
    on_behalf = await complaints.post(
        "/v1/complaints", json={**body, "received_by": "bob"}, headers=ADMIN
    )
    assert on_behalf.status_code == 201 and on_behalf.json()["owner"] == "bob"


async def test_analysts_read_figures_not_free_text(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    await move(complaints, str(complaint["id"]), AGENT, "judged", note="spoke to Mr Li")
    listed = (await complaints.get("/v1/complaints", headers=ANALYST)).json()["items"]
    assert listed[0]["description"] is None and listed[0]["severity"] == "minor"
    detail = (await complaints.get(f"/v1/complaints/{complaint['id']}", headers=ANALYST)).json()
    assert detail["description"] is None
    assert all(entry["note"] is None for entry in detail["history"])
    # Analysts do not work complaints.
    assert (await move(complaints, str(complaint["id"]), ANALYST, "decided")).status_code == 403
    assert (
        await complaints.post(
            "/v1/complaints",
            json={"customer_id": complaint["customer_id"], "channel": "phone", "description": "x"},
            headers=ANALYST,
        )
    ).status_code == 403


async def test_only_admins_change_the_sla_policy(complaints: httpx.AsyncClient) -> None:
    for headers in (MANAGER, AGENT, ANALYST):
        response = await complaints.put("/v1/sla-policies", json=WALL_CLOCK_POLICY, headers=headers)
        assert response.status_code == 403
        assert (await complaints.get("/v1/sla-policies", headers=headers)).status_code == 200
    default = (await complaints.get("/v1/sla-policies", headers=AGENT)).json()
    assert default["version"] == 0 and default["document"]["business_calendar"]["country"] == "CN"
    written = await complaints.put("/v1/sla-policies", json=WALL_CLOCK_POLICY, headers=ADMIN)
    assert written.status_code == 200 and written.json()["version"] == 1


async def test_a_policy_that_cannot_work_is_refused(complaints: httpx.AsyncClient) -> None:
    missing_minor = {
        "targets": [
            {"severity": s, "respond_minutes": 60, "resolve_minutes": 480}
            for s in ("major", "critical")
        ]
    }
    no_hours = {**WALL_CLOCK_POLICY, "business_calendar": {"hours": {}}}
    bad_country = {
        **WALL_CLOCK_POLICY,
        "business_calendar": {"hours": {"mon": [["09:00", "18:00"]]}, "country": "XX"},
    }
    backwards = {
        **WALL_CLOCK_POLICY,
        "business_calendar": {"hours": {"mon": [["18:00", "09:00"]]}},
    }
    for document in (missing_minor, no_hours, bad_country, backwards):
        response = await complaints.put("/v1/sla-policies", json=document, headers=ADMIN)
        assert response.status_code == 422, document
        assert response.headers["content-type"] == "application/problem+json"
    assert (await complaints.get("/v1/sla-policies", headers=ADMIN)).json()["version"] == 0
