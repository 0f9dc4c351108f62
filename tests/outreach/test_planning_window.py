"""The planning window: contacts due within it are tasks, later ones are planned and shown
by `/v1/customers/{id}/upcoming`, and become tasks as the window reaches them; a pending
task the plan moves past the window is moved, not cancelled."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from sqlalchemy import update

from services.outreach import repository as repo
from services.outreach.models import Recipient
from services.outreach.service import outreach_service
from shared.db import create_engine, session_factory
from tests.conftest import ADMIN, ANALYST, MANAGER
from tests.outreach.conftest import Events, born_in, tasks_of


async def plan_at(url: str, customer_id: uuid.UUID, now: dt.datetime) -> int:
    """The planner's run for one customer at another moment (as on a later day)."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            customers = await repo.recipients.planning_facts(session, ids=[customer_id])
            return await outreach_service.plan_customers(session, customers, now)
    finally:
        await engine.dispose()


async def test_only_contacts_within_the_window_are_tasks(
    outreach_windowed: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer(birthday=born_in(100, 1980))
    contact = str(uuid.uuid4())
    await events.send(
        customer,
        "customer.updated",
        {"contacts": [{"id": contact, "name": "Li Wei", "birthday": born_in(10, 1985)}]},
    )
    tasks = await tasks_of(outreach_windowed, customer)
    # The contact's birthday (in 10 days, 3 days' lead) is a task; the customer's own (in
    # 100 days), the revisit (180) and the survey (365) are not yet.
    assert [(t["kind"], t["occasion"].split(":")[1]) for t in tasks] == [("birthday", contact)]

    response = await outreach_windowed.get(f"/v1/customers/{customer}/upcoming", headers=ADMIN)
    assert response.status_code == 200, response.text
    upcoming = response.json()
    now = dt.datetime.now(dt.UTC)
    tasks_until = dt.datetime.fromisoformat(upcoming["tasks_until"])
    assert abs(tasks_until - (now + dt.timedelta(days=31))) < dt.timedelta(minutes=1)
    by_kind = {(i["kind"], i["occasion"].split(":")[1]): i for i in upcoming["items"]}
    assert set(by_kind) == {
        ("birthday", contact),
        ("birthday", "self"),
        ("revisit", "1"),
        ("survey", "1"),
    }
    assert by_kind[("birthday", contact)]["task_id"] == tasks[0]["id"]
    own = by_kind[("birthday", "self")]
    assert own["task_id"] is None and own["status"] == "planned"
    assert own["basis"]["of"] == "the customer"
    assert dt.datetime.fromisoformat(own["due_at"]) > tasks_until
    dues = [i["due_at"] for i in upcoming["items"]]
    assert dues == sorted(dues)

    # Seventy-five days on, the window has reached the customer's own birthday: the
    # planner's run makes it a task, due as /upcoming said.
    assert await plan_at(events.url, customer, now + dt.timedelta(days=75)) == 1
    made = {t["occasion"]: t for t in await tasks_of(outreach_windowed, customer)}
    assert made[own["occasion"]]["due_at"] == own["due_at"]
    assert made[own["occasion"]]["status"] == "pending"


async def test_upcoming_is_seen_as_tasks_are(
    outreach_windowed: httpx.AsyncClient, events: Events
) -> None:
    mine = await events.customer(birthday=born_in(100, 1980))
    theirs = await events.customer(birthday=born_in(100, 1980), account_manager="noah")
    assert (
        await outreach_windowed.get(f"/v1/customers/{theirs}/upcoming", headers=MANAGER)
    ).status_code == 404
    assert (
        await outreach_windowed.get(f"/v1/customers/{uuid.uuid4()}/upcoming", headers=ADMIN)
    ).status_code == 404
    seen = await outreach_windowed.get(f"/v1/customers/{mine}/upcoming", headers=MANAGER)
    assert seen.status_code == 200
    # Analysts see what is planned, not whose birthday it is.
    analyst = await outreach_windowed.get(f"/v1/customers/{mine}/upcoming", headers=ANALYST)
    birthdays = [i for i in analyst.json()["items"] if i["kind"] == "birthday"]
    assert birthdays and all("of" not in i["basis"] for i in birthdays)


async def test_a_task_moved_past_the_window_is_moved_not_cancelled(
    outreach_windowed: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer(birthday="1980-06-10")
    spring = dt.datetime(2031, 5, 15, 2, tzinfo=dt.UTC)
    await plan_at(events.url, customer, spring)
    (birthday,) = [
        t
        for t in await tasks_of(outreach_windowed, customer)
        if t["occasion"] == "birthday:self:2031"
    ]
    # The birthday was recorded wrong: it is in September, past the window. The same
    # occasion (this year's birthday) is still asked for, later.
    # (Set in the table, as the event would, without the event's own planning at today.)
    engine = create_engine(events.url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                update(Recipient)
                .where(Recipient.customer_id == customer)
                .values(birthday=dt.date(1980, 9, 10))
            )
    finally:
        await engine.dispose()
    await plan_at(events.url, customer, spring)
    moved = {t["id"]: t for t in await tasks_of(outreach_windowed, customer)}[birthday["id"]]
    assert moved["status"] == "pending"
    assert moved["due_at"].startswith("2031-09-07")
    assert moved["basis"]["date"] == "2031-09-10"
