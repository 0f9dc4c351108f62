"""Durable SLA timers: warnings and breaches act once, escalation reassigns one level at a
time (once per level across restarts and replicas), and deadlines follow the policy."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx

from services.complaints.app import create_app
from services.complaints.settings import ComplaintsSettings
from tests.complaints.conftest import (
    WALL_CLOCK_POLICY,
    Events,
    fire_timers,
    move,
    open_complaint,
    use_policy,
)
from tests.conftest import ADMIN, AGENT, eventually, query, running, service_settings


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def detail(client: httpx.AsyncClient, complaint_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/complaints/{complaint_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def escalated_events(url: str) -> list[Any]:
    return await query(
        url, "SELECT payload FROM outbox WHERE event_type = 'complaint.escalated' ORDER BY id"
    )


async def test_breach_escalates_one_level_and_reassigns(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    await use_policy(complaints, WALL_CLOCK_POLICY)
    customer = await events.customer()
    complaint = await open_complaint(complaints, customer, AGENT)
    cid = str(complaint["id"])
    respond_by = at(complaint["respond_by"])
    opened = at(complaint["opened_at"])
    assert respond_by - opened == dt.timedelta(hours=1)

    # Before the warning point nothing happens; at 80% a warning; at the deadline, level 1.
    await fire_timers(complaints_db, opened + dt.timedelta(minutes=30))
    assert [e["action"] for e in (await detail(complaints, cid))["history"]] == ["opened"]
    await fire_timers(complaints_db, opened + dt.timedelta(minutes=49))
    actions = [e["action"] for e in (await detail(complaints, cid))["history"]]
    assert actions == ["opened", "sla_warning"]
    await fire_timers(complaints_db, respond_by)
    state = await detail(complaints, cid)
    assert state["escalation_level"] == 1 and state["assignee"] == "tina"
    assert state["owner"] == "ann"  # the first-contact owner stays accountable
    assert state["breached"]
    # The same moment again (a restart, a replay) changes nothing.
    await fire_timers(complaints_db, respond_by + dt.timedelta(seconds=5))
    assert (await detail(complaints, cid))["escalation_level"] == 1
    assert len(await escalated_events(complaints_db)) == 1
    # Breached complaints are a filter.
    listed = (await complaints.get("/v1/complaints?breached=true", headers=ADMIN)).json()
    assert [item["id"] for item in listed["items"]] == [cid]

    # The resolve deadline is the second breach: level 2, the head of service.
    resolve_by = at(state["resolve_by"])
    await fire_timers(complaints_db, resolve_by)
    state = await detail(complaints, cid)
    assert state["escalation_level"] == 2 and state["assignee"] == "hugo"
    payloads = [row.payload for row in await escalated_events(complaints_db)]
    assert ['"level":1' in p and '"breached":"respond"' in p for p in payloads] == [True, False]
    assert '"level":2' in payloads[1] and '"breached":"resolve"' in payloads[1]


async def test_an_answer_in_time_never_escalates(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    await use_policy(complaints, WALL_CLOCK_POLICY)
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    cid = str(complaint["id"])
    assert (await move(complaints, cid, AGENT, "judged")).status_code == 200
    await fire_timers(complaints_db, at(complaint["respond_by"]) + dt.timedelta(minutes=1))
    state = await detail(complaints, cid)
    assert state["escalation_level"] == 0 and not state["breached"]


async def test_two_replicas_escalate_once(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    await use_policy(complaints, WALL_CLOCK_POLICY)
    opened = [await open_complaint(complaints, await events.customer(), AGENT) for _ in range(20)]
    late = max(at(c["respond_by"]) for c in opened) + dt.timedelta(seconds=1)
    # Two timers (each with its own engine, as two replicas) race over the same due clocks.
    await asyncio.gather(fire_timers(complaints_db, late), fire_timers(complaints_db, late))
    rows = await query(complaints_db, "SELECT complaint_id, level FROM escalations")
    assert len(rows) == 20 and {row.level for row in rows} == {1}
    assert len(await escalated_events(complaints_db)) == 20


async def test_a_policy_change_moves_open_deadlines(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    await use_policy(complaints, WALL_CLOCK_POLICY)
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    cid = str(complaint["id"])
    opened = at(complaint["opened_at"])
    stricter: dict[str, Any] = {
        **WALL_CLOCK_POLICY,
        "targets": [{**target, "respond_minutes": 15} for target in WALL_CLOCK_POLICY["targets"]],
    }
    await use_policy(complaints, stricter)
    await fire_timers(complaints_db, dt.datetime.now(dt.UTC))
    assert at((await detail(complaints, cid))["respond_by"]) == opened + dt.timedelta(minutes=15)
    # Switching the SLA back off-target: a breach computed under the old policy does not
    # stay (the flag follows the clock; the escalation stays in the history).
    await fire_timers(complaints_db, opened + dt.timedelta(minutes=16))
    assert (await detail(complaints, cid))["breached"]
    await use_policy(complaints, WALL_CLOCK_POLICY)
    await fire_timers(complaints_db, opened + dt.timedelta(minutes=17))
    state = await detail(complaints, cid)
    assert not state["breached"] and state["escalation_level"] == 1
    assert at(state["respond_by"]) == opened + dt.timedelta(hours=1)


async def test_a_calendar_change_moves_open_deadlines(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    office: dict[str, Any] = {
        **WALL_CLOCK_POLICY,
        "business_calendar": {
            "timezone": "UTC",
            "hours": {day: [["00:00", "00:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        },
    }
    await use_policy(complaints, WALL_CLOCK_POLICY)
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    opened = at(complaint["opened_at"])
    # Close the day the complaint arrived: its deadline moves past that day.
    office["business_calendar"]["closed_days"] = [opened.date().isoformat()]
    office["business_calendar"]["extra_working_days"] = [
        (opened.date() + dt.timedelta(days=n)).isoformat() for n in range(1, 4)
    ]
    await use_policy(complaints, office)
    await fire_timers(complaints_db, dt.datetime.now(dt.UTC))
    state = await detail(complaints, str(complaint["id"]))
    next_day = dt.datetime.combine(opened.date() + dt.timedelta(days=1), dt.time(0), dt.UTC)
    assert at(state["respond_by"]) == next_day + dt.timedelta(hours=1)


async def test_a_paused_complaint_does_not_breach(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    await use_policy(complaints, WALL_CLOCK_POLICY)
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    cid = str(complaint["id"])
    await move(complaints, cid, AGENT, "waiting_on_customer", note="asked for photos")
    await fire_timers(complaints_db, at(complaint["respond_by"]) + dt.timedelta(hours=5))
    state = await detail(complaints, cid)
    assert state["escalation_level"] == 0 and not state["breached"]
    assert state["sla"]["paused"] and state["respond_by"] is None


async def test_a_deadline_passed_while_stopped_fires_at_start(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    """Timers live in the database: a service started after a deadline passed acts on it
    at once (no timer is lost with the process that set it)."""
    fast: dict[str, Any] = {
        **WALL_CLOCK_POLICY,
        "targets": [{**target, "respond_minutes": 0.01} for target in WALL_CLOCK_POLICY["targets"]],
    }
    await use_policy(complaints, fast)
    complaint = await open_complaint(complaints, await events.customer(), AGENT)
    await asyncio.sleep(1)  # the deadline passes while no timer runs
    settings = service_settings(
        ComplaintsSettings,
        database_url=complaints_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        relay_poll_interval_s=5,
    )
    async with running(create_app(settings)) as restarted:

        async def escalated() -> bool:
            return bool((await detail(restarted, str(complaint["id"])))["escalation_level"] == 1)

        await eventually(escalated, timeout=10)
