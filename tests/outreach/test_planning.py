"""Planning from events through the API: tasks per plan and tier, hand-over and review on
tier changes, repurchase reminders that move with purchases, complaints holding marketing
and asking for a follow-up, erasure, out-of-order events, the worklist, the calendar feed
and who sees what."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid
from typing import Any

import httpx
import icalendar
import pytest

from services.outreach.consumers import BULK_HANDLERS
from services.outreach.settings import OutreachSettings
from tests.conftest import (
    ADMIN,
    AGENT,
    ANALYST,
    MANAGER,
    eventually,
    query,
    running,
    service_settings,
)
from tests.outreach.conftest import Events, dispatch, due_now, tasks_of

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
def now_at_each_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOW is when the test starts, not when the module was imported (a suite that runs
    past midnight UTC would lay out days against the wrong date)."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", dt.datetime.now(dt.UTC))


def kinds(tasks: list[dict[str, Any]], status: str = "pending") -> dict[str, dict[str, Any]]:
    return {t["kind"]: t for t in tasks if t["status"] == status}


async def test_tasks_follow_the_tier_plan(outreach: httpx.AsyncClient, events: Events) -> None:
    customer = await events.customer(birthday="1985-07-20", birthday_calendar="lunar")
    plain = kinds(await tasks_of(outreach, customer))
    assert set(plain) >= {"birthday", "revisit", "survey"}
    assert plain["revisit"]["assignee"] is None  # the rest tier: nobody owns the contact
    assert plain["birthday"]["basis"]["calendar"] == "lunar"

    # Into the top tier: a hand-over task, and the A plan (visits by the account manager).
    await events.tier(customer, "A")
    after = await tasks_of(outreach, customer)
    top = kinds(after)
    assert top["hand_over"]["assignee"] == "mia"
    assert top["revisit"]["channel"] == "visit" and top["revisit"]["assignee"] == "mia"
    assert top["birthday"]["channel"] == "gift"
    # The old plan's pending revisit was cancelled, not left beside the new one.
    cancelled = [t for t in after if t["status"] == "cancelled"]
    assert {t["kind"] for t in cancelled} >= {"revisit"}
    # Leaving the top tier asks for a review.
    await events.tier(customer, "B", previous="A")
    assert "review" in kinds(await tasks_of(outreach, customer))


async def test_planning_again_creates_nothing_new(
    outreach: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer(birthday="1990-02-28")
    before = await tasks_of(outreach, customer)
    again = await outreach.post(f"/v1/planning?customer_id={customer}", headers=ADMIN)
    assert again.json() == {"created": 0}
    assert len(await tasks_of(outreach, customer)) == len(before)


async def test_repurchase_reminder_moves_with_purchases(
    outreach: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer()

    async def bought(days_ago: float, amount: str = "120.00") -> None:
        when = NOW - dt.timedelta(days=days_ago)
        await events.send_envelope(events.purchase_envelope(customer, when, amount, "formula"))

    for days_ago in (41, 21):  # two purchases: not yet a cycle of its own
        await bought(days_ago)
    assert "repurchase" not in kinds(await tasks_of(outreach, customer))
    await bought(1.5)  # every ~20 days: next about 18 days from now
    reminder = kinds(await tasks_of(outreach, customer))["repurchase"]
    basis = reminder["basis"]
    assert basis["from"] == "own" and basis["purchases"] == 3
    assert 19 <= basis["interval_days"] <= 20.5
    assert reminder["due_at"] < basis["predicted_at"].replace("+00:00", "Z")
    # A purchase before the reminder: it is cancelled, and the next one follows the new
    # last purchase.
    await bought(0.1)
    tasks = await tasks_of(outreach, customer)
    assert reminder["id"] in {t["id"] for t in tasks if t["status"] == "cancelled"}
    moved = kinds(tasks)["repurchase"]
    assert moved["basis"]["purchases"] == 4
    assert moved["basis"]["last_purchase_at"] > basis["last_purchase_at"]
    # A refund is not a purchase.
    await bought(0, "-120.00")
    assert kinds(await tasks_of(outreach, customer))["repurchase"]["id"] == moved["id"]


async def test_a_poll_of_tiers_and_purchases_plans_as_one_event_at_a_time(
    outreach: httpx.AsyncClient, events: Events
) -> None:
    """A first ranking's tier changes and an import's purchases come as polls of thousands,
    each applied in one go (BULK_HANDLERS): every customer ends with the tasks the same
    events one at a time give, without the passing tiers' tasks in between."""

    def tier(customer: uuid.UUID, name: str, previous: str | None, minutes_ago: int) -> Any:
        return events.tier_envelope(
            customer, name, previous, NOW - dt.timedelta(minutes=minutes_ago)
        )

    def bought(customer: uuid.UUID, days_ago: int, category: str | None, amount: str) -> Any:
        return events.purchase_envelope(
            customer, NOW - dt.timedelta(days=days_ago), amount, category
        )

    def story(top: uuid.UUID, through: uuid.UUID, late: uuid.UUID, buyer: uuid.UUID) -> list[Any]:
        """The same events for each set of customers (the tier changes, then purchases)."""
        return [
            tier(top, "A", None, 30),  # into the top tier: a hand-over
            tier(through, "A", "B", 20),  # through the top tier: a hand-over, then a review
            tier(late, "A", None, 10),
            tier(through, "C", "A", 15),
            tier(late, "C", None, 40),  # older than the A it arrives after: nothing
        ], [
            bought(buyer, 42, "formula", "120.00"),
            bought(buyer, 22, "formula", "120.00"),
            bought(buyer, 2, "formula", "120.00"),  # every 20 days: the next in 18
            bought(buyer, 1, "formula", "-120.00"),  # a refund is not a purchase
            bought(buyer, 5, None, "80.00"),
        ]

    one_by_one = [await events.customer(birthday="1980-06-01") for _ in range(4)]
    at_once = [await events.customer(birthday="1980-06-01") for _ in range(4)]
    for envelope in [event for poll in story(*one_by_one) for event in poll]:
        await events.send_envelope(envelope)
    for poll in story(*at_once):
        await events.send_poll(poll, BULK_HANDLERS)

    def pending(tasks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (t["kind"], t["occasion"], t["channel"], t["assignee"], t["basis"].get("purchases"))
            for t in tasks
            if t["status"] == "pending"
        )

    for alone, together in zip(one_by_one, at_once, strict=True):
        expected = pending(await tasks_of(outreach, alone))
        found = pending(await tasks_of(outreach, together))
        assert [row[0] for row in found] == [row[0] for row in expected]
        assert [row[2:] for row in found] == [row[2:] for row in expected]
    top, through, late, buyer = [kinds(await tasks_of(outreach, c)) for c in at_once]
    assert top["hand_over"]["assignee"] == "mia" and top["revisit"]["channel"] == "visit"
    assert {"hand_over", "review"} <= set(through) and through["revisit"]["channel"] != "visit"
    assert late["revisit"]["channel"] == "visit"
    assert buyer["repurchase"]["basis"]["purchases"] == 3
    # The old plan's revisit was cancelled once, for the tier the poll ended on.
    cancelled = [t for t in await tasks_of(outreach, at_once[1]) if t["status"] == "cancelled"]
    assert [t["decisions"][-1]["reason"] for t in cancelled if t["kind"] == "revisit"] == [
        "the tier changed to C"
    ]
    # A later poll adds to the cycle it finds: an older purchase moves its first one back
    # (4 purchases over 80 days: every ~26.7 days).
    await events.send_poll([bought(at_once[3], 82, "formula", "120.00")], BULK_HANDLERS)
    basis = kinds(await tasks_of(outreach, at_once[3]))["repurchase"]["basis"]
    assert basis["purchases"] == 4 and 26 <= basis["interval_days"] <= 27.5


async def test_a_poll_that_ends_on_the_tier_a_customer_had_keeps_its_cadence(
    outreach: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer()
    await events.tier(customer, "A", at=NOW - dt.timedelta(hours=1))
    revisit = kinds(await tasks_of(outreach, customer))["revisit"]
    out_and_back = [
        events.tier_envelope(customer, "B", "A", NOW - dt.timedelta(minutes=2)),
        events.tier_envelope(customer, "A", "B", NOW - dt.timedelta(minutes=1)),
    ]
    await events.send_poll(out_and_back, BULK_HANDLERS)
    after = kinds(await tasks_of(outreach, customer))
    assert after["revisit"]["id"] == revisit["id"]  # not cancelled and planned again
    assert after["review"]["basis"]["to_tier"] == "B"  # each move still asks for its task
    hand_overs = [t for t in await tasks_of(outreach, customer) if t["kind"] == "hand_over"]
    assert len(hand_overs) == 2


async def test_an_open_complaint_holds_marketing_and_its_closing_asks_for_a_follow_up(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str
) -> None:
    customer = await events.customer(birthday="1980-06-01")
    birthday = kinds(await tasks_of(outreach, customer))["birthday"]
    complaint = str(uuid.uuid4())
    opened = {
        "complaint_id": complaint,
        "severity": "major",
        "owner": "ann",
        "respond_by": NOW.isoformat(),
        "resolve_by": NOW.isoformat(),
    }
    await events.send(customer, "complaint.opened", opened)
    await due_now(outreach, birthday["id"])
    await dispatch(outreach_db, None)
    held = next(t for t in await tasks_of(outreach, customer) if t["id"] == birthday["id"])
    assert held["status"] == "held" and "complaint" in held["decisions"][-1]["reason"]

    closed = {"complaint_id": complaint, "resolution_hours": 5.0, "satisfaction": 4}
    await events.send(customer, "complaint.closed", closed)
    tasks = await tasks_of(outreach, customer)
    released = next(t for t in tasks if t["id"] == birthday["id"])
    assert released["status"] == "pending" and released["decisions"][-1]["decision"] == "released"
    follow_up = kinds(tasks)["complaint_follow_up"]
    assert follow_up["basis"]["complaint_id"] == complaint and not follow_up["marketing"]
    # The same closing again (a replay) asks for nothing more.
    await events.send(customer, "complaint.closed", closed)
    assert [t["kind"] for t in await tasks_of(outreach, customer)].count("complaint_follow_up") == 1
    # A late complaint.opened (sent before the closing, arriving after) holds nothing.
    await events.send(customer, "complaint.opened", opened, NOW - dt.timedelta(minutes=5))
    await dispatch(outreach_db, None)
    assert (
        next(t for t in await tasks_of(outreach, customer) if t["id"] == birthday["id"])["status"]
        != "held"
    )


async def test_older_customer_events_never_overwrite_newer_ones(
    outreach: httpx.AsyncClient, events: Events
) -> None:
    customer = uuid.uuid4()
    await events.send(customer, "customer.updated", {"timezone": "America/New_York"}, NOW)
    await events.send(
        customer,
        "customer.created",
        {"name": "x", "kind": "person", "timezone": "Asia/Shanghai", "birthday": "1970-01-05"},
        NOW - dt.timedelta(minutes=1),
    )
    birthday = kinds(await tasks_of(outreach, customer))["birthday"]
    # 10:00 in New York (the newer zone), three days before 5 January.
    due = dt.datetime.fromisoformat(birthday["due_at"].replace("Z", "+00:00"))
    assert due.astimezone(dt.timezone(dt.timedelta(hours=-5))).hour == 10


async def test_erasure_cancels_every_open_task(outreach: httpx.AsyncClient, events: Events) -> None:
    customer = await events.customer(birthday="1980-06-01")
    assert kinds(await tasks_of(outreach, customer))
    await events.send(customer, "customer.erased", {})
    tasks = await tasks_of(outreach, customer)
    assert tasks and {t["status"] for t in tasks} == {"cancelled"}
    assert all(t["decisions"][-1]["reason"] == "the customer was erased" for t in tasks)
    # Later events about the customer plan nothing again.
    await events.send(customer, "customer.updated", {"birthday": "1981-01-01"})
    assert {t["status"] for t in await tasks_of(outreach, customer)} == {"cancelled"}


async def test_the_worklist_by_hand(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str
) -> None:
    customer = await events.customer()
    await events.tier(customer, "A")
    pending = kinds(await tasks_of(outreach, customer))
    hand_over, revisit = pending["hand_over"], pending["revisit"]
    await due_now(outreach, revisit["id"])
    await dispatch(outreach_db, None)
    # The hand-over is urgent and goes first; the revisit moves to tomorrow.
    worklist = await outreach.get("/v1/tasks?assignee=mia&status=ready", headers=MANAGER)
    assert [t["id"] for t in worklist.json()["items"]] == [hand_over["id"]]
    moved = next(t for t in await tasks_of(outreach, customer) if t["id"] == revisit["id"])
    assert moved["status"] == "deferred"
    assert moved["decisions"][-1]["reason"] == "one contact a day: hand_over went first"
    snoozed = await outreach.post(
        f"/v1/tasks/{revisit['id']}/reschedule",
        json={"due_at": (NOW + dt.timedelta(days=2)).isoformat(), "reason": "customer away"},
        headers=MANAGER,
    )
    assert snoozed.status_code == 200 and snoozed.json()["status"] == "pending"
    naive = await outreach.post(
        f"/v1/tasks/{revisit['id']}/reschedule",
        json={"due_at": "2026-12-01T10:00:00"},
        headers=MANAGER,
    )
    assert naive.status_code == 422
    reassigned = await outreach.post(
        f"/v1/tasks/{hand_over['id']}/reassign",
        json={"assignee": "max", "reason": "Max takes the key account"},
        headers=MANAGER,
    )
    assert reassigned.status_code == 200 and reassigned.json()["assignee"] == "max"
    done = await outreach.post(
        f"/v1/tasks/{revisit['id']}/complete",
        json={"outcome": "done", "notes": "visited the plant; happy with deliveries"},
        headers=MANAGER,
    )
    assert done.status_code == 200 and done.json()["status"] == "done"
    again = await outreach.post(
        f"/v1/tasks/{revisit['id']}/complete", json={"outcome": "done"}, headers=MANAGER
    )
    assert again.status_code == 409
    # The next revisit counts from the one done.
    await outreach.post(f"/v1/planning?customer_id={customer}", headers=ADMIN)
    following = kinds(await tasks_of(outreach, customer))["revisit"]
    assert following["id"] != revisit["id"]
    due = dt.datetime.fromisoformat(following["due_at"].replace("Z", "+00:00"))
    assert dt.timedelta(days=29) <= due - NOW <= dt.timedelta(days=31)


async def test_who_sees_which_tasks(outreach: httpx.AsyncClient, events: Events) -> None:
    mine = await events.customer(account_manager="mia")
    theirs = await events.customer(account_manager="max")
    listed = (await outreach.get("/v1/tasks?limit=500", headers=MANAGER)).json()["items"]
    assert {t["customer_id"] for t in listed} == {str(mine)}
    other_task = (await tasks_of(outreach, theirs))[0]
    assert (await outreach.get(f"/v1/tasks/{other_task['id']}", headers=MANAGER)).status_code == 404
    completed = await outreach.post(
        f"/v1/tasks/{other_task['id']}/complete", json={"outcome": "done"}, headers=MANAGER
    )
    assert completed.status_code == 404
    # Agents see their own worklist only; analysts read but do not work tasks.
    assert (await outreach.get("/v1/tasks", headers=AGENT)).json()["items"] == []
    assert (await outreach.get("/v1/tasks", headers=ANALYST)).status_code == 200
    refused = await outreach.post(
        f"/v1/tasks/{other_task['id']}/complete", json={"outcome": "done"}, headers=ANALYST
    )
    assert refused.status_code == 403
    plan = (await outreach.get("/v1/plans/A", headers=MANAGER)).json()["document"]
    assert (await outreach.put("/v1/plans/A", json=plan, headers=MANAGER)).status_code == 403


async def test_plans_and_calendar_validation(outreach: httpx.AsyncClient) -> None:
    listed = (await outreach.get("/v1/plans", headers=ANALYST)).json()
    assert [p["tier"] for p in listed][:2] == ["A", "B"] and listed[-1]["tier"] == "*"
    for bad in (
        {"owner": "specialist"},
        {"revisit_days": 0},
        {"channels": {"birthday": "carrier-pigeon"}},
        {"budget": [{"channel": "sms", "max": -1, "window_days": 7}]},
        {"unknown": 1},
    ):
        response = await outreach.put("/v1/plans/C", json=bad, headers=ADMIN)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
    assert (await outreach.get("/v1/plans/C", headers=ADMIN)).json()["updated_at"] is None
    holidays = (
        await outreach.get("/v1/calendar?from=2026-09-25&to=2026-10-10", headers=ADMIN)
    ).json()
    assert {"National Day"} <= {entry["name"] for entry in holidays}
    bad_range = await outreach.get("/v1/calendar?from=2026-10-10&to=2026-09-25", headers=ADMIN)
    assert bad_range.status_code == 422


async def test_club_events_invite_by_tier(outreach: httpx.AsyncClient, events: Events) -> None:
    gold, other = await events.customer(), await events.customer()
    await events.tier(gold, "A")
    await events.tier(other, "C")
    day = (NOW + dt.timedelta(days=20)).date().isoformat()
    created = await outreach.post(
        "/v1/calendar",
        json={"on": day, "kind": "club_event", "name": "Spring gala", "tiers": ["A"]},
        headers=ANALYST,
    )
    assert created.status_code == 201, created.text
    for customer in (gold, other):
        await outreach.post(f"/v1/planning?customer_id={customer}", headers=ADMIN)
    assert kinds(await tasks_of(outreach, gold))["club_event"]["basis"]["occasion"] == "Spring gala"
    assert "club_event" not in kinds(await tasks_of(outreach, other))


async def test_the_calendar_feed(outreach: httpx.AsyncClient, events: Events) -> None:
    customer = await events.customer()
    await events.tier(customer, "A")
    created = await outreach.post("/v1/feeds", headers=MANAGER)
    assert created.status_code == 201
    url = created.json()["url"]
    path = url[url.index("/v1/") :]
    feed = await outreach.get(path)  # no API key: the secret address is the credential
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.content)
    summaries = [str(event["summary"]) for event in calendar.walk("VEVENT")]
    assert "hand over (visit)" in summaries and any(s.startswith("revisit") for s in summaries)
    # No contact details (icalendar folds long lines, so unfold before looking).
    unfolded = feed.content.replace(b"\r\n ", b"")
    assert b"+86 138 0000 0000" not in unfolded and b"Li Wei" not in unfolded
    assert b"li.wei@example.com" not in unfolded
    # Rotating the address stops the old one; revoking stops all.
    rotated = (await outreach.post("/v1/feeds", headers=MANAGER)).json()["url"]
    assert (await outreach.get(path)).status_code == 401
    new_path = rotated[rotated.index("/v1/") :]
    assert (await outreach.get(new_path)).status_code == 200
    assert (await outreach.delete("/v1/feeds", headers=MANAGER)).status_code == 204
    assert (await outreach.get(new_path)).status_code == 401


async def test_one_replica_runs_the_scheduled_planning(
    outreach_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.outreach.app as outreach_app_module

    planned_by: list[int] = []
    real = outreach_app_module.plan_everyone

    async def counted(runtime: Any) -> int:
        planned_by.append(id(runtime))
        return await real(runtime)

    monkeypatch.setattr(outreach_app_module, "plan_everyone", counted)
    settings = service_settings(
        OutreachSettings,
        database_url=outreach_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        planning_interval_s=0.2,
    )
    async with (
        running(outreach_app_module.create_app(settings)),
        running(outreach_app_module.create_app(settings)),
    ):
        await eventually(lambda: asyncio.sleep(0, len(planned_by) >= 3), timeout=60)
        await asyncio.sleep(0.6)  # a few more turns on both replicas
    assert len(set(planned_by)) == 1, planned_by  # every run by the same replica
    [(holders,)] = await query(
        outreach_db, "SELECT count(*) FROM leases WHERE name = 'outreach-planning'"
    )
    assert holders == 1
