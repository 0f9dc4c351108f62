"""Statistics on a constructed history (return rate by severity and speed), and the local
view of customers that complaints keep from events, whatever their arrival order."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select, true, update

from services.complaints.consumers import BULK_HANDLERS
from services.complaints.models import Complaint, ComplaintFigures, KnownCustomer
from services.complaints.repository import figures_of, refresh_figures, tally_of
from shared.db import create_engine, session_factory
from tests.complaints.conftest import STEP_FIELDS, Events, move, open_complaint
from tests.complaints.test_workflow import PATHS
from tests.conftest import ADMIN, AGENT, ANALYST, MANAGER

NOW = dt.datetime.now(dt.UTC)
Row = TypeVar("Row")


@pytest.fixture(autouse=True)
def now_at_each_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOW is when the test starts, not when the module was imported (a suite that runs
    past midnight UTC would lay out days against the wrong date)."""
    monkeypatch.setattr(sys.modules[__name__], "NOW", dt.datetime.now(dt.UTC))


async def closed_complaint(
    client: httpx.AsyncClient, events: Events, url: str, *, severity: str, satisfaction: int
) -> tuple[uuid.UUID, str]:
    customer = await events.customer()
    complaint = await open_complaint(client, customer, AGENT, severity=severity)
    cid = str(complaint["id"])
    for step in PATHS["confirmed"]:
        fields = dict(STEP_FIELDS[step])
        if step == "judged":
            fields["severity"] = severity
        if step == "confirmed":
            fields["satisfaction"] = satisfaction
        response = await move(client, cid, AGENT, step, **fields)
        assert response.status_code == 200, response.text
    return customer, cid


async def set_closed_at(url: str, complaint_id: str, when: dt.datetime) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            moved = Complaint.id == uuid.UUID(complaint_id)
            await conn.execute(update(Complaint).where(moved).values(closed_at=when))
            # Written behind the service's back, so its figures are refreshed here.
            await conn.execute(refresh_figures(conn.dialect.name, moved))
    finally:
        await engine.dispose()


async def stored(url: str, model: type[Row], key: uuid.UUID) -> Row:
    """A row as the service stored it (read in a session of its own)."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            found = await session.get(model, key)
            assert found is not None
            return found
    finally:
        await engine.dispose()


async def test_return_rate_by_severity(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    long_ago = NOW - dt.timedelta(days=120)
    came_back, _ = minor_back = await closed_complaint(
        complaints, events, complaints_db, severity="minor", satisfaction=5
    )
    _, minor_gone = await closed_complaint(
        complaints, events, complaints_db, severity="minor", satisfaction=4
    )
    major_customer, major_back = await closed_complaint(
        complaints, events, complaints_db, severity="major", satisfaction=3
    )
    recent_customer, _ = await closed_complaint(
        complaints, events, complaints_db, severity="major", satisfaction=5
    )
    for cid in (minor_back[1], minor_gone, major_back):
        await set_closed_at(complaints_db, cid, long_ago)
    await events.purchase(came_back, long_ago + dt.timedelta(days=30))
    await events.purchase(major_customer, long_ago + dt.timedelta(days=80))
    await events.purchase(major_customer, long_ago - dt.timedelta(days=1))  # before: no
    # A refund after closure is not buying again; a purchase 100 days after is too late.
    refund_customer, refund_only = await closed_complaint(
        complaints, events, complaints_db, severity="minor", satisfaction=5
    )
    await set_closed_at(complaints_db, refund_only, long_ago)
    await events.purchase(refund_customer, long_ago + dt.timedelta(days=5), "-10")
    await events.purchase(refund_customer, long_ago + dt.timedelta(days=100))
    await events.purchase(recent_customer, NOW + dt.timedelta(days=1))  # within its window

    response = await complaints.get("/v1/complaints/stats?group_by=severity", headers=ANALYST)
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    overall = stats["overall"]
    assert overall["opened"] == overall["closed"] == 5
    assert overall["by_status"] == {"confirmed": 5}
    # Eligible: the four closed 120 days ago, and the recent one that already came back.
    assert overall["return_rate"] == {"returned": 3, "eligible": 5, "rate": 0.6}
    by_severity = overall["return_rate_by_severity"]
    assert by_severity["minor"] == {"returned": 1, "eligible": 3, "rate": 0.3333}
    assert by_severity["major"] == {"returned": 2, "eligible": 2, "rate": 1.0}
    assert overall["return_rate_by_speed"]["within_sla"]["eligible"] == 5
    assert overall["mean_satisfaction"] == 4.4
    assert overall["sla_compliance"] == 1.0 and overall["reopen_rate"] == 0.0
    assert overall["resolve"]["count"] == 5
    assert overall["resolve"]["median_wall_hours"] is not None
    groups = {group["key"]: group for group in stats["groups"]}
    assert set(groups) == {"minor", "major"} and groups["major"]["closed"] == 2
    assert stats["practice"]["return_rate_minor_resolved_quickly"] == 0.95
    # Statistics are figures for analysts and admins, not for agents.
    assert (await complaints.get("/v1/complaints/stats", headers=AGENT)).status_code == 403


async def test_a_poll_of_purchases_and_tiers_is_taken_at_once(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    """A first ranking's or an import's thousands of events come as polls, each applied
    in one go (BULK_HANDLERS) with what one event at a time gives."""
    long_ago = NOW - dt.timedelta(days=120)
    back, back_complaint = await closed_complaint(
        complaints, events, complaints_db, severity="minor", satisfaction=5
    )
    early, early_complaint = await closed_complaint(
        complaints, events, complaints_db, severity="major", satisfaction=4
    )
    for complaint_id in (back_complaint, early_complaint):
        await set_closed_at(complaints_db, complaint_id, long_ago)
    stranger = uuid.uuid4()  # no complaint, not even known yet

    def bought(customer: uuid.UUID, days_after: int, amount: str = "10") -> Any:
        return events.purchase_envelope(customer, long_ago + dt.timedelta(days=days_after), amount)

    await events.send_poll(
        [
            bought(back, 100),  # too late
            bought(back, 30),
            bought(stranger, 1),
            bought(back, 5, "-10"),  # a refund: not buying again
            bought(back, 10),  # the earliest purchase within 90 days is kept
            bought(early, -1),  # before the closure
        ],
        BULK_HANDLERS,
    )
    returned = await stored(complaints_db, Complaint, uuid.UUID(back_complaint))
    assert returned.returned_at == long_ago + dt.timedelta(days=10)
    assert (await stored(complaints_db, Complaint, uuid.UUID(early_complaint))).returned_at is None
    stats = (await complaints.get("/v1/complaints/stats", headers=ANALYST)).json()["overall"]
    assert stats["return_rate"] == {"returned": 1, "eligible": 2, "rate": 0.5}

    def tier(customer: uuid.UUID, name: str, minutes_ago: int) -> Any:
        return events.tier_envelope(customer, name, at=NOW - dt.timedelta(minutes=minutes_ago))

    newcomer = uuid.uuid4()
    await events.send_poll(
        [tier(back, "A", 5), tier(newcomer, "C", 3), tier(back, "C", 9), tier(back, "B", 1)],
        BULK_HANDLERS,
    )
    # In order, and an older tier (arriving later) changes nothing.
    assert (await stored(complaints_db, KnownCustomer, back)).tier == "B"
    assert (await stored(complaints_db, KnownCustomer, newcomer)).tier == "C"


async def test_stats_of_reopens_and_percentiles(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    customer = await events.customer()
    complaint = await open_complaint(complaints, customer, AGENT)
    cid = str(complaint["id"])
    for step in PATHS["following_up"]:
        await move(complaints, cid, AGENT, step, **STEP_FIELDS[step])
    await move(complaints, cid, AGENT, "confirmed", satisfaction=1)  # reopens
    await move(complaints, cid, AGENT, "decided", remedy="a new unit")
    for step in ("communicated", "following_up"):
        await move(complaints, cid, AGENT, step, **STEP_FIELDS[step])
    await move(complaints, cid, AGENT, "confirmed", satisfaction=5)
    await open_complaint(complaints, customer, AGENT)  # still open
    stats = (await complaints.get("/v1/complaints/stats", headers=ADMIN)).json()["overall"]
    assert stats["by_status"] == {"confirmed": 1, "received": 1}
    assert stats["reopen_rate"] == 1.0 and stats["mean_satisfaction"] == 5.0
    bad = await complaints.get("/v1/complaints/stats?from=2026-01-01T00:00:00", headers=ADMIN)
    assert bad.status_code == 422


async def test_an_older_customer_event_never_overwrites_a_newer_one(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    customer = uuid.uuid4()
    newer = NOW
    older = NOW - dt.timedelta(minutes=5)
    await events.send(customer, "customer.updated", {"account_manager": "mia"}, newer)
    # customer.created travels on another topic and arrives late.
    await events.send(
        customer,
        "customer.created",
        {"name": "x", "kind": "company", "account_manager": "max"},
        older,
    )
    await events.tier(customer, "A", at=newer)
    await events.tier(customer, "C", at=older)
    row = await stored(complaints_db, KnownCustomer, customer)
    assert (row.account_manager, row.tier) == ("mia", "A")
    # The tier when the complaint arrives picks its SLA targets and is a list filter.
    complaint = await open_complaint(complaints, customer, MANAGER)
    assert complaint["tier"] == "A"
    listed = (await complaints.get("/v1/complaints?tier=A", headers=ADMIN)).json()["items"]
    assert [item["id"] for item in listed] == [complaint["id"]]


async def test_erasure_drops_personal_text_and_refuses_new_complaints(
    complaints: httpx.AsyncClient, events: Events
) -> None:
    customer = await events.customer()
    complaint = await open_complaint(complaints, customer, AGENT)
    cid = str(complaint["id"])
    await move(complaints, cid, AGENT, "waiting_on_customer", note="call Mr Wang on 138...")
    await events.send(customer, "customer.erased", {})
    detail = (await complaints.get(f"/v1/complaints/{cid}", headers=ADMIN)).json()
    assert detail["description"] is None
    assert all(entry["note"] is None for entry in detail["history"])
    again = await complaints.post(
        "/v1/complaints",
        json={"customer_id": str(customer), "channel": "phone", "description": "again"},
        headers=AGENT,
    )
    assert again.status_code == 410


async def figures_tables(url: str) -> tuple[list[Any], list[Any]]:
    """complaint_figures as the service kept it, and as recomputed from the complaints."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            kept = (await conn.execute(select(ComplaintFigures.__table__))).all()
            again = (await conn.execute(figures_of(true()))).all()
    finally:
        await engine.dispose()
    return sorted(kept), sorted(again)


async def test_the_figures_follow_every_change(
    complaints: httpx.AsyncClient, events: Events, complaints_db: str
) -> None:
    """The statistics' narrow rows equal a recomputation from the complaints after opening,
    judging (severity and category), a hand-over, closing, a return and a reopen."""
    customer, closed = await closed_complaint(
        complaints, events, complaints_db, severity="major", satisfaction=4
    )
    await events.purchase(customer, NOW + dt.timedelta(days=1))  # came back
    other = await open_complaint(complaints, await events.customer(), AGENT)
    moved = await move(
        complaints, str(other["id"]), AGENT, "judged", severity="critical", category="billing"
    )
    assert moved.status_code == 200, moved.text
    handed = await complaints.post(
        f"/v1/complaints/{other['id']}/hand-over",
        json={"to": "bob", "reason": "shift"},
        headers=AGENT,
    )
    assert handed.status_code == 200, handed.text
    kept, again = await figures_tables(complaints_db)
    assert len(kept) == 2 and kept == again
    by_id = {row.complaint_id: row for row in kept}
    closed_tally = tally_of(by_id[uuid.UUID(closed)].tally)
    assert closed_tally.returned and closed_tally.status == "confirmed"
    assert by_id[uuid.UUID(closed)].satisfaction == 4
    assert by_id[uuid.UUID(other["id"])].owner == "bob"
    assert by_id[uuid.UUID(other["id"])].category == "billing"
    assert (await move(complaints, closed, AGENT, "reopened")).status_code == 200
    kept, again = await figures_tables(complaints_db)
    assert kept == again
    reopened = next(row for row in kept if row.complaint_id == uuid.UUID(closed))
    assert tally_of(reopened.tally).reopened and reopened.closed_at is None
