"""/readyz tells the truth about the broker; the relay waits for it and loses nothing."""

from __future__ import annotations

import sqlalchemy as sa

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from shared.broker import free_port
from shared.db import create_engine
from tests.conftest import ADMIN, DatabaseFactory, running, service_settings


async def test_readyz_is_503_when_the_broker_is_unreachable_but_writes_still_commit(
    new_database: DatabaseFactory, topic_prefix: str
) -> None:
    url = await new_database("profile")
    nowhere = f"127.0.0.1:{free_port()}"
    settings = service_settings(
        ProfileSettings, database_url=url, bootstrap=nowhere, prefix=topic_prefix
    )
    async with running(create_app(settings)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert {"field": "broker", "message": "unreachable"} in ready.json()["errors"]
        assert (await client.get("/healthz")).status_code == 200
        created = await client.post(
            "/v1/customers", json={"name": "A", "kind": "person"}, headers=ADMIN
        )
        assert created.status_code == 201
    engine = create_engine(url)
    async with engine.connect() as conn:
        pending = (
            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        ).scalar()
    await engine.dispose()
    assert pending == 1  # kept for the relay, not dropped
