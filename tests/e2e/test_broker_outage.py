"""Broker down: purchases recorded meanwhile all reach tiering once it is back, exactly once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from services.profile.app import create_app as create_profile
from services.profile.settings import ProfileSettings
from services.tiering.app import create_app as create_tiering
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine
from tests.conftest import ADMIN, DatabaseFactory, eventually, running, service_settings

PURCHASES = 500


async def _flow_metrics(client: Any) -> str:
    """The relay's and the consumer's counters: which side stopped, when events go missing."""
    text = (await client.get("/metrics")).text
    wanted = ("crm_outbox", "crm_events", "crm_consumer", "crm_broker")
    return "\n".join(line for line in text.splitlines() if line.startswith(wanted))


async def test_purchases_recorded_while_broker_is_down_arrive_once(
    new_database: DatabaseFactory, topic_prefix: str
) -> None:
    # This test stops its broker, so it has one of its own (the in-memory broker
    # forgets everything when stopped: the outbox is what must make up for it).
    broker = EmbeddedBroker()
    broker.start()
    try:
        tiering_db = await new_database("tiering")
        common = {
            "bootstrap": broker.bootstrap,
            "prefix": topic_prefix,
            "relay_max_backoff_s": 0.5,
            "kafka_request_timeout_ms": 3000,
        }
        profile = create_profile(
            service_settings(ProfileSettings, database_url=await new_database("profile"), **common)
        )
        tiering = create_tiering(
            service_settings(TieringSettings, database_url=tiering_db, **common)
        )
        async with running(profile) as prof, running(tiering) as tier:
            created = await prof.post(
                "/v1/customers", json={"name": "Outage Ltd", "kind": "company"}, headers=ADMIN
            )
            customer_id = created.json()["id"]

            async def tiering_knows_customer() -> bool:
                view = await tier.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
                return view.status_code == 200

            await eventually(tiering_knows_customer)

            await asyncio.to_thread(broker.stop)
            outage = await prof.get("/readyz")  # still serving: the outbox keeps the writes
            assert outage.status_code == 200
            assert outage.json()["checks"]["broker"] == "unreachable"
            for n in range(PURCHASES):
                response = await prof.post(
                    f"/v1/customers/{customer_id}/purchases",
                    json={
                        "amount": f"{n % 7 + 1}.10",
                        "currency": "CNY",
                        "purchased_at": "2026-11-01T09:00:00Z",
                    },
                    headers=ADMIN,
                )
                assert response.status_code == 201, response.text
            await asyncio.sleep(1)  # the relay fails and backs off meanwhile
            await asyncio.to_thread(broker.start)

            async def all_applied() -> dict[str, str] | None:
                view = await tier.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
                aggregates = view.json()["aggregates"]
                return aggregates if aggregates["purchase_count"] >= PURCHASES else None

            try:
                aggregates = await eventually(all_applied, timeout=90)
            except AssertionError as missing:
                raise AssertionError(
                    f"{missing}\n{await _flow_metrics(prof)}\n{await _flow_metrics(tier)}"
                ) from None
            await asyncio.sleep(1)  # time for any duplicate to show up
            final = (await tier.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)).json()
            assert final["aggregates"]["purchase_count"] == PURCHASES
            expected = sum(Decimal(f"{n % 7 + 1}.10") for n in range(PURCHASES))
            assert Decimal(aggregates["revenue"]) == expected
            assert (await prof.get("/readyz")).json()["checks"]["broker"] == "ok"
    finally:
        broker.stop()

    engine = create_engine(tiering_db)
    async with engine.connect() as conn:
        handled = (
            await conn.execute(
                sa.text("SELECT count(*) FROM inbox WHERE event_type = 'purchase.recorded'")
            )
        ).scalar()
    await engine.dispose()
    assert handled == PURCHASES
