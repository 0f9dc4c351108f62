"""Order-proof projections: profile stamps each `customer.*` event with the customer's
revision, and every consumer keeps a field's value only from a newer revision, even when
the event times say otherwise (clocks of different replicas disagree)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from services.complaints.consumers import BULK_HANDLERS as COMPLAINTS_POLL
from services.complaints.consumers import HANDLERS as COMPLAINTS
from services.outreach.consumers import BULK_HANDLERS as OUTREACH_POLL
from services.outreach.consumers import HANDLERS as OUTREACH
from services.tiering.consumers import BULK_HANDLERS as TIERING_POLL
from services.tiering.consumers import HANDLERS as TIERING
from shared.revisions import Stamp
from tests.conftest import DatabaseFactory, EventSender, query

LATER = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
EARLIER = LATER - dt.timedelta(minutes=5)

# Per service: its handlers, and the SQL reading back (account manager or name, timezone
# or relationship level) of a customer.
CONSUMERS: dict[str, tuple[dict[str, Any], str]] = {
    "tiering": (
        TIERING,
        "SELECT account_manager AS a, relationship_level AS b FROM customer_aggregates "
        "WHERE customer_id = :c",
    ),
    "complaints": (
        COMPLAINTS,
        "SELECT account_manager AS a, timezone AS b FROM known_customers WHERE customer_id = :c",
    ),
    "outreach": (
        OUTREACH,
        "SELECT name AS a, timezone AS b FROM recipients WHERE customer_id = :c",
    ),
}
NEWER = {"name": "Acme Ltd", "account_manager": "noah", "relationship_level": "partner",
         "timezone": "Europe/Berlin"}  # fmt: skip
OLDER = {"name": "Acme", "account_manager": "mia", "relationship_level": "vendor",
         "timezone": "Asia/Shanghai"}  # fmt: skip


def expected(service: str, values: dict[str, str]) -> tuple[str, str]:
    first = "name" if service == "outreach" else "account_manager"
    second = "relationship_level" if service == "tiering" else "timezone"
    return values[first], values[second]


async def fields(url: str, sql: str, customer: uuid.UUID) -> tuple[Any, Any]:
    """The two fields `sql` reads back of the customer (`a`, `b`)."""
    [row] = await query(url, sql, c=customer if "postgresql" in url else customer.hex)
    return row.a, row.b


@pytest.mark.parametrize("service", sorted(CONSUMERS))
async def test_a_field_keeps_the_newer_revision_whatever_the_event_times(
    service: str, new_database: DatabaseFactory
) -> None:
    url = await new_database(service)
    handlers, sql = CONSUMERS[service]
    events = EventSender(url, handlers)
    customer = uuid.uuid4()
    # The update (revision 2) was stamped by a replica whose clock runs behind: its time
    # is earlier than that of the creation (revision 1), which arrives after it.
    await events.send(customer, "customer.updated", {**NEWER, "revision": 2}, EARLIER)
    await events.send(
        customer, "customer.created", {**OLDER, "kind": "company", "revision": 1}, LATER
    )
    assert await fields(url, sql, customer) == expected(service, NEWER)
    # An event from before revisions (none stamped) is older than any stamped one.
    await events.send(customer, "customer.updated", OLDER, LATER + dt.timedelta(days=1))
    assert await fields(url, sql, customer) == expected(service, NEWER)
    # A newer revision applies.
    await events.send(customer, "customer.updated", {**OLDER, "revision": 3}, EARLIER)
    assert await fields(url, sql, customer) == expected(service, OLDER)


# The services that apply a poll of customer events at once (an import brings thousands).
POLLS: dict[str, dict[str, Any]] = {
    "tiering": TIERING_POLL,
    "complaints": COMPLAINTS_POLL,
    "outreach": OUTREACH_POLL,
}


@pytest.mark.parametrize("service", sorted(POLLS))
async def test_a_poll_of_customer_events_keeps_the_newer_revision_per_field(
    service: str, new_database: DatabaseFactory
) -> None:
    url = await new_database(service)
    handlers, sql = CONSUMERS[service]
    customer, other = uuid.uuid4(), uuid.uuid4()
    # Revision 3 arrives first, with the earlier time: revision 2 changes nothing.
    updates = [
        (customer, {**NEWER, "revision": 3}, EARLIER),
        (customer, {**OLDER, "revision": 2}, LATER),
        (other, {**OLDER, "revision": 2}, LATER),
    ]
    await EventSender(url, handlers).send_poll(
        [EventSender.envelope(who, "customer.updated", data, at) for who, data, at in updates],
        POLLS[service],
    )
    for who, values in ((customer, NEWER), (other, OLDER)):
        assert await fields(url, sql, who) == expected(service, values)


def test_without_revisions_the_event_time_decides_and_stored_times_still_count() -> None:
    assert Stamp(None, LATER).newer_than(Stamp.from_json(EARLIER.isoformat()))
    assert not Stamp(None, EARLIER).newer_than(Stamp(None, LATER))
    assert Stamp(None, LATER).newer_than(Stamp(None, LATER))  # a tie: the later arrival
    assert Stamp(1, EARLIER).newer_than(Stamp(None, LATER))
    assert not Stamp(2, LATER).newer_than(Stamp(2, EARLIER))


# Per service: the SQL reading back whether a complaint is known as open, and its severity
# where the service keeps one.
COMPLAINT_STATE: dict[str, tuple[dict[str, Any], str]] = {
    "tiering": (
        TIERING,
        "SELECT closed_at IS NULL AS open, severity FROM complaints WHERE complaint_id = :c",
    ),
    "outreach": (
        OUTREACH,
        "SELECT open, NULL AS severity FROM complaint_states WHERE complaint_id = :c",
    ),
}


@pytest.mark.parametrize("service", sorted(COMPLAINT_STATE))
async def test_a_late_complaint_opened_leaves_the_complaint_closed(
    service: str, new_database: DatabaseFactory
) -> None:
    url = await new_database(service)
    handlers, sql = COMPLAINT_STATE[service]
    events = EventSender(url, handlers)
    customer, complaint = uuid.uuid4(), uuid.uuid4()
    await events.send(
        customer,
        "complaint.closed",
        {"complaint_id": str(complaint), "resolution_hours": 3.0, "satisfaction": 4},
        LATER,
    )
    opened = {"complaint_id": str(complaint), "severity": "major", "owner": "ann",
              "respond_by": LATER.isoformat(), "resolve_by": LATER.isoformat()}  # fmt: skip
    await events.send(customer, "complaint.opened", opened, EARLIER)
    [row] = await query(url, sql, c=complaint if "postgresql" in url else complaint.hex)
    assert not row.open
    if service == "tiering":  # what only the opening says is filled in
        assert row.severity == "major"
