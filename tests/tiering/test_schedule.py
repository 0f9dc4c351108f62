"""The scheduled re-rank ranks customers with nobody asking, and announces the changes; one
replica runs it, fitting the churn model first when that is due."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from services.tiering.app import create_app
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.db import create_engine
from tests.conftest import ADMIN, eventually, running, service_settings
from tests.tiering.conftest import Feed
from tests.tiering.test_scores import ago


async def test_scheduled_rerank(
    broker: EmbeddedBroker, tiering_db: str, feed: Feed, topic_prefix: str
) -> None:
    first, second = feed.customer(), feed.customer()
    feed.purchase(first, "900", ago(3))
    feed.purchase(second, "100", ago(3))
    await feed.apply()
    settings = service_settings(
        TieringSettings,
        database_url=tiering_db,
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        rerank_interval_s=0.3,
    )
    async with running(create_app(settings)) as client:

        async def ranked() -> list[str | None] | None:
            found = []
            for customer in (first, second):
                view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
                found.append(view.json()["tier"])
            return found if None not in found else None

        assert await eventually(ranked) == ["A", "D"]  # 100 comes after 90% of revenue

        async def announced() -> bool:
            text = (await client.get("/metrics")).text
            return 'crm_outbox_published_total{topic="tier.changed"} 2.0' in text

        await eventually(announced)


async def test_one_replica_runs_the_schedule_and_fits_the_churn_model_when_due(
    broker: EmbeddedBroker, tiering_db: str, feed: Feed, topic_prefix: str
) -> None:
    customer = feed.customer()
    feed.purchase(customer, "900", ago(3))
    await feed.apply()
    settings = service_settings(
        TieringSettings,
        database_url=tiering_db,
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        rerank_interval_s=0.2,
        churn_fit_interval_s=3600,
    )
    engine = create_engine(tiering_db)

    async def fits() -> int:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(sa.text("SELECT count(*) FROM churn_model_fits"))).scalar() or 0
            )

    async with running(create_app(settings)), running(create_app(settings)):
        await eventually(fits)
        await asyncio.sleep(1.0)  # five more turns of the schedule on both replicas
        assert await fits() == 1  # one replica, and not again until it is due
        async with engine.connect() as conn:
            holders = (
                await conn.execute(
                    sa.text("SELECT count(*) FROM leases WHERE name = 'tiering-schedule'")
                )
            ).scalar()
    await engine.dispose()
    assert holders == 1
