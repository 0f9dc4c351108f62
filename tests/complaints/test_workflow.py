"""The complaint workflow through the HTTP API: every legal and illegal move, what each
step records, first-contact ownership and hand-over, and the history."""

from __future__ import annotations

import httpx
import pytest

from services.complaints.workflow import FORWARD, WAITING, allowed_moves
from tests.complaints.conftest import STEP_FIELDS, Events, move, open_complaint
from tests.conftest import ADMIN, AGENT, OTHER_AGENT

ALL_STATUSES = [*FORWARD, WAITING]
# How to bring a fresh complaint to each status (from received).
PATHS: dict[str, list[str]] = {
    "received": [],
    "judged": ["judged"],
    "decided": ["judged", "decided"],
    "communicated": ["judged", "decided", "communicated"],
    "following_up": ["judged", "decided", "communicated", "following_up"],
    "confirmed": ["judged", "decided", "communicated", "following_up", "confirmed"],
    "reopened": ["judged", "decided", "communicated", "following_up", "confirmed", "reopened"],
    WAITING: ["judged", WAITING],
}


async def _at(client: httpx.AsyncClient, events: Events, status: str) -> dict[str, object]:
    customer = await events.customer()
    complaint = await open_complaint(client, customer, AGENT)
    for step in PATHS[status]:
        response = await move(client, str(complaint["id"]), AGENT, step, **STEP_FIELDS[step])
        assert response.status_code == 200, (step, response.text)
    return complaint


async def test_the_whole_way_and_its_history(complaints: httpx.AsyncClient, events: Events) -> None:
    complaint = await _at(complaints, events, "confirmed")
    detail = (await complaints.get(f"/v1/complaints/{complaint['id']}", headers=AGENT)).json()
    assert detail["status"] == "confirmed"
    assert detail["severity"] == "major" and detail["category"] == "delivery"
    assert detail["remedy"] == "refund the delivery fee" and detail["remedy_by"] == "dan"
    assert detail["customer_told"] == "told the customer by phone"
    assert detail["satisfaction"] == 5 and detail["closed_at"] is not None
    assert detail["owner"] == "ann" == detail["received_by"]
    moves = [(e["from_status"], e["to_status"], e["actor"]) for e in detail["history"]]
    assert moves == [
        (None, "received", "ann"),
        ("received", "judged", "ann"),
        ("judged", "decided", "ann"),
        ("decided", "communicated", "ann"),
        ("communicated", "following_up", "ann"),
        ("following_up", "confirmed", "ann"),
    ]
    assert all(entry["at"] for entry in detail["history"])
    assert detail["allowed_moves"] == ["reopened"]


@pytest.mark.parametrize("status", ALL_STATUSES)
async def test_every_move_from_each_status(
    complaints: httpx.AsyncClient, events: Events, status: str
) -> None:
    """Each legal move is accepted; each illegal one is a 409 naming the allowed moves and
    changing nothing."""
    paused_from = "judged" if status == WAITING else None
    legal = set(allowed_moves(status, paused_from))
    for target in ALL_STATUSES:
        complaint = await _at(complaints, events, status)
        response = await move(
            complaints, str(complaint["id"]), AGENT, target, **STEP_FIELDS[target]
        )
        if target in legal:
            assert response.status_code == 200, (status, target, response.text)
            assert response.json()["status"] in (target, "reopened")
        else:
            assert response.status_code == 409, (status, target, response.text)
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert problem["errors"][0]["allowed"] == sorted(
                legal, key=list(allowed_moves(status, paused_from)).index
            )
            after = await complaints.get(f"/v1/complaints/{complaint['id']}", headers=AGENT)
            assert after.json()["status"] == status


async def test_waiting_resumes_where_it_paused(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    complaint = await _at(complaints, events, "decided")
    cid = str(complaint["id"])
    paused = await move(complaints, cid, AGENT, WAITING, note="waiting for photos")
    assert paused.json()["allowed_moves"] == ["decided", "communicated"]
    resumed = await move(complaints, cid, AGENT, "decided", remedy="replace the part")
    assert resumed.status_code == 200 and resumed.json()["status"] == "decided"


async def test_each_step_records_what_it_is_about(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    complaint = await _at(complaints, events, "received")
    cid = str(complaint["id"])
    stray = await move(complaints, cid, AGENT, "judged", satisfaction=4)
    assert stray.status_code == 422 and stray.json()["errors"][0]["field"] == "satisfaction"
    assert (await move(complaints, cid, AGENT, "judged", severity="critical")).status_code == 200
    no_remedy = await move(complaints, cid, AGENT, "decided")
    assert no_remedy.status_code == 422
    bad = await move(complaints, cid, AGENT, "decided", remedy="x", severity="major")
    assert bad.status_code == 422
    detail = (await complaints.get(f"/v1/complaints/{cid}", headers=AGENT)).json()
    assert detail["status"] == "judged" and detail["severity"] == "critical"


async def test_a_dissatisfied_confirmation_reopens(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    complaint = await _at(complaints, events, "following_up")
    cid = str(complaint["id"])
    response = await move(complaints, cid, AGENT, "confirmed", satisfaction=2)
    detail = response.json()
    assert detail["status"] == "reopened" and detail["reopen_count"] == 1
    assert detail["closed_at"] is None
    assert [e["to_status"] for e in detail["history"][-2:]] == ["confirmed", "reopened"]
    assert len(detail["sla"]["cycles"]) == 2  # a reopen starts a new resolve cycle


async def test_first_contact_owner_and_hand_over(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    complaint = await _at(complaints, events, "received")
    cid = str(complaint["id"])
    assigned = await complaints.post(
        f"/v1/complaints/{cid}/assignment", json={"assignee": "bob"}, headers=AGENT
    )
    assert assigned.status_code == 200
    assert assigned.json()["owner"] == "ann" and assigned.json()["assignee"] == "bob"
    # Bob works on it but does not own it: he cannot hand it over.
    by_bob = await complaints.post(
        f"/v1/complaints/{cid}/hand-over", json={"to": "bob", "reason": "mine"}, headers=OTHER_AGENT
    )
    assert by_bob.status_code == 403
    no_reason = await complaints.post(
        f"/v1/complaints/{cid}/hand-over", json={"to": "bob"}, headers=AGENT
    )
    assert no_reason.status_code == 422
    handed = await complaints.post(
        f"/v1/complaints/{cid}/hand-over",
        json={"to": "bob", "reason": "Ann moves to the Shanghai office"},
        headers=AGENT,
    )
    assert handed.status_code == 200 and handed.json()["owner"] == "bob"
    detail = (await complaints.get(f"/v1/complaints/{cid}", headers=ADMIN)).json()
    hand_over = next(e for e in detail["history"] if e["action"] == "hand_over")
    assert hand_over["actor"] == "ann" and hand_over["note"] == "Ann moves to the Shanghai office"
    assert hand_over["details"] == {"from": "ann", "to": "bob"}
    assert detail["received_by"] == "ann"
    # Ann received it: she still sees it, but no longer owns it.
    seen_by_ann = await complaints.get(f"/v1/complaints/{cid}", headers=AGENT)
    assert seen_by_ann.status_code == 200 and seen_by_ann.json()["owner"] == "bob"
    again = await complaints.post(
        f"/v1/complaints/{cid}/hand-over", json={"to": "ann", "reason": "back"}, headers=AGENT
    )
    assert again.status_code == 403


async def test_bad_input_changes_nothing(complaints: httpx.AsyncClient, events: Events) -> None:
    customer = await events.customer()
    for body in (
        {"customer_id": str(customer), "channel": "pigeon", "description": "x"},
        {"customer_id": "not-a-uuid", "channel": "phone", "description": "x"},
        {"customer_id": str(customer), "channel": "phone", "description": ""},
        {"customer_id": str(customer), "channel": "phone", "description": "x", "extra": 1},
    ):
        response = await complaints.post("/v1/complaints", json=body, headers=AGENT)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    listed = (await complaints.get("/v1/complaints", headers=ADMIN)).json()
    assert listed["items"] == []
    unknown = await complaints.get(
        "/v1/complaints/00000000-0000-0000-0000-000000000000", headers=ADMIN
    )
    assert unknown.status_code == 404


async def test_idempotent_open(complaints: httpx.AsyncClient, events: Events) -> None:
    customer = await events.customer()
    body = {"customer_id": str(customer), "channel": "email", "description": "broken seal"}
    headers = {**AGENT, "Idempotency-Key": "k-1"}
    first = await complaints.post("/v1/complaints", json=body, headers=headers)
    again = await complaints.post("/v1/complaints", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["location"] == f"/v1/complaints/{first.json()['id']}"
    listed = (await complaints.get("/v1/complaints", headers=ADMIN)).json()
    assert len(listed["items"]) == 1
