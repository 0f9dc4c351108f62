"""The scheduled re-rank ranks customers with nobody asking, and announces the changes."""

from __future__ import annotations

from services.tiering.app import create_app
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
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
