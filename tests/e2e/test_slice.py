"""The foundation's vertical slice, end to end over the real broker and both databases:
profile records a purchase -> outbox -> Kafka -> tiering's aggregates and the customer's
tier at once; its tier.changed -> Kafka -> profile's tier field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from services.profile.app import create_app as create_profile
from services.profile.settings import ProfileSettings
from services.tiering.app import create_app as create_tiering
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine
from shared.observability import JsonLogFormatter
from tests.conftest import ADMIN, DatabaseFactory, eventually, running, service_settings


@pytest.fixture
def consumer_log() -> Iterator[io.StringIO]:
    """The consumer's log lines, as the JSON a service writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter("tiering"))
    logger = logging.getLogger("crm.consumer")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_purchase_reaches_tiering_once(
    broker: EmbeddedBroker,
    new_database: DatabaseFactory,
    topic_prefix: str,
    consumer_log: io.StringIO,
) -> None:
    profile_db = await new_database("profile")
    profile = create_profile(
        service_settings(
            ProfileSettings,
            database_url=profile_db,
            bootstrap=broker.bootstrap,
            prefix=topic_prefix,
        )
    )
    tiering = create_tiering(
        service_settings(
            TieringSettings,
            database_url=await new_database("tiering"),
            bootstrap=broker.bootstrap,
            prefix=topic_prefix,
        )
    )
    async with running(profile) as prof, running(tiering) as tier:
        created = await prof.post(
            "/v1/customers",
            json={"name": "Harbin Water Co.", "kind": "company", "region": "north"},
            headers={**ADMIN, "X-Correlation-ID": "corr-slice-1"},
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        amounts = ["1299.50", "200.25", "0.25"]
        for n, amount in enumerate(amounts):
            response = await prof.post(
                f"/v1/customers/{customer_id}/purchases",
                json={
                    "amount": amount,
                    "currency": "CNY",
                    "quantity": "2",
                    "category": "formula",
                    "purchased_at": f"2026-10-0{n + 1}T08:30:00Z",
                },
                headers=ADMIN,
            )
            assert response.status_code == 201, response.text

        async def applied() -> dict[str, object] | None:
            view = await tier.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
            if view.status_code != 200:
                return None
            body = view.json()
            return body if body["aggregates"]["purchase_count"] == 3 else None

        view = await eventually(applied)
        aggregates = view["aggregates"]
        assert Decimal(aggregates["revenue"]) == sum(Decimal(a) for a in amounts)
        assert Decimal(aggregates["quantity"]) == Decimal(6)
        assert aggregates["first_purchase_at"].startswith("2026-10-01T08:30:00")
        assert aggregates["last_purchase_at"].startswith("2026-10-03T08:30:00")
        assert view["customer_id"] == customer_id

        # customer.created travels on a topic of its own: nothing orders it before or after
        # the purchases, so wait for it rather than assume it came first.
        async def created_handled() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in consumer_log.getvalue().splitlines()]
            return [line for line in lines if line["msg"] == "handled customer.created"]

        handled = await eventually(created_handled)

        # The purchases gave the customer a tier at once (no re-rank waited for); its
        # tier.changed travels back from tiering's history to profile, and a re-rank
        # afterwards finds nothing to change.
        async def tiered() -> dict[str, Any] | None:
            body: dict[str, Any] = (
                await tier.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
            ).json()
            return body if body["tier"] == "A" else None

        tier_now = await eventually(tiered)  # (the batch of customer.created commits last)
        ranked = await tier.post("/v1/recompute", headers=ADMIN, json={})
        assert ranked.status_code == 200 and ranked.json()["changed"] == 0, ranked.text

        # Profile may first hold the rest tier customer.created gave (when it came first):
        # wait for the latest change to arrive.
        async def tier_in_profile() -> str | None:
            body = (await prof.get(f"/v1/customers/{customer_id}", headers=ADMIN)).json()
            found: str | None = body.get("tier")
            return found if found == tier_now["tier"] else None

        assert await eventually(tier_in_profile) == tier_now["tier"] is not None

    # The correlation id of the HTTP request travelled into the event's envelope.
    engine = create_engine(profile_db)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text("SELECT event_type, payload, published_at FROM outbox ORDER BY id")
            )
        ).all()
    await engine.dispose()
    assert [row.event_type for row in rows] == ["customer.created"] + ["purchase.recorded"] * 3
    assert all(row.published_at is not None for row in rows)
    first = json.loads(rows[0].payload)
    assert first["correlation_id"] == "corr-slice-1"
    assert first["producer"] == "profile" and first["customer_id"] == customer_id
    purchase = json.loads(rows[1].payload)
    assert purchase["data"]["amount"] == "1299.50"  # money travels as a decimal string
    # ... and into the log lines of the consumer that handled it in the other service.
    assert handled and handled[0]["correlation_id"] == "corr-slice-1"
    assert handled[0]["event_id"] == first["id"]
