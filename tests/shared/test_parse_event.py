"""A consumed message's envelope and data are validated in one pass: the same data as
validating the envelope, then its data, with the same refusals; the revision a consumer
orders `customer.*` events by is read from it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import EventEnvelope, parse_data, parse_event
from shared.revisions import stamp_of

AT = "2026-03-01T12:00:00.123456+08:00"


def message(event_type: str, data: dict[str, Any] | None) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "occurred_at": AT,
        "producer": "profile",
        "customer_id": str(uuid.uuid4()),
    }
    if data is not None:
        envelope["data"] = data
    return envelope


PURCHASE = {
    "purchase_id": str(uuid.uuid4()),
    "amount": "1234.56",
    "currency": "CNY",
    "quantity": "3",
    "purchased_at": AT,
    "channel": "store",  # a field a producer added: kept
}
UPDATE = {"revision": 5, "name": "Acme Ltd", "account_manager": "noah"}


@pytest.mark.parametrize(
    ("event_type", "data"),
    [("purchase.recorded", PURCHASE), ("customer.updated", UPDATE), ("customer.updated", None)],
)
def test_one_pass_gives_what_the_envelope_then_its_data_gave(
    event_type: str, data: dict[str, Any] | None
) -> None:
    raw = message(event_type, data)
    envelope, parsed = parse_event(json.dumps(raw).encode(), event_type)
    separately = EventEnvelope.model_validate(raw)
    assert parsed == parse_data(separately)
    assert parsed.model_dump() == parse_data(separately).model_dump()
    assert (envelope.id, envelope.customer_id, envelope.occurred_at) == (
        separately.id,
        separately.customer_id,
        separately.occurred_at,
    )
    assert stamp_of(envelope) == stamp_of(separately)


def test_the_revision_is_read_from_the_parsed_data() -> None:
    envelope, _ = parse_event(
        json.dumps(message("customer.updated", UPDATE)).encode(), "customer.updated"
    )
    assert stamp_of(envelope).revision == 5


@pytest.mark.parametrize(
    ("event_type", "raw", "error"),
    [
        # an envelope of another type on this topic
        ("purchase.recorded", message("customer.updated", UPDATE), "on topic for"),
        # data that breaks the topic's model, or none where fields are required
        ("purchase.recorded", message("purchase.recorded", {**PURCHASE, "amount": "x"}), "amount"),
        ("purchase.recorded", message("purchase.recorded", None), "purchase_id"),
        # not an envelope
        ("purchase.recorded", {"type": "purchase.recorded"}, "customer_id"),
        # a moment without its offset, in the envelope or in the data
        (
            "purchase.recorded",
            {**message("purchase.recorded", PURCHASE), "occurred_at": "2026-03-01T12:00:00"},
            "timezone",
        ),
        (
            "purchase.recorded",
            message("purchase.recorded", {**PURCHASE, "purchased_at": "2026-03-01T12:00:00"}),
            "timezone",
        ),
        # a type the catalog does not know
        ("no.such", message("no.such", {}), "unknown event type"),
    ],
)
def test_what_the_separate_passes_refused_is_refused(
    event_type: str, raw: dict[str, Any], error: str
) -> None:
    with pytest.raises((ValidationError, ValueError), match=error):
        parse_event(json.dumps(raw).encode(), event_type)
