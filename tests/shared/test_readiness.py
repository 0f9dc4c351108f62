"""/readyz depends on the service's own database alone: a broker outage is reported (in
the checks, /healthz and a metric) while writes go on into the outbox, the backlog
gauge counts what waits, and the relay waits for the broker and loses nothing."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from shared.broker import free_port
from shared.db import create_engine
from tests.conftest import ADMIN, DatabaseFactory, eventually, running, service_settings


async def test_a_broker_outage_is_reported_but_the_service_stays_ready_and_writes_commit(
    new_database: DatabaseFactory, topic_prefix: str
) -> None:
    url = await new_database("profile")
    nowhere = f"127.0.0.1:{free_port()}"
    settings = service_settings(
        ProfileSettings, database_url=url, bootstrap=nowhere, prefix=topic_prefix
    )
    async with running(create_app(settings)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "unreachable"}
        health = await client.get("/healthz")
        assert health.json() == {"status": "ok", "broker": "unreachable"}
        assert "crm_broker_up 0.0" in (await client.get("/metrics")).text
        created = await client.post(
            "/v1/customers", json={"name": "A", "kind": "person"}, headers=ADMIN
        )
        assert created.status_code == 201

        async def backlog_shown() -> str | None:
            text = (await client.get("/metrics")).text
            return text if 'crm_outbox_backlog{source="outbox"} 1.0' in text else None

        metrics = await eventually(backlog_shown, timeout=30)
        [age] = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('crm_outbox_backlog_age_seconds{source="outbox"}')
        ]
        assert age > 0
    engine = create_engine(url)
    async with engine.connect() as conn:
        pending = (
            await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        ).scalar()
    await engine.dispose()
    assert pending == 1  # kept for the relay, not dropped


async def test_readyz_is_503_when_the_database_does_not_answer(
    tmp_path: Path, topic_prefix: str
) -> None:
    (tmp_path / "profile.db").mkdir()  # a folder where the database file should be
    settings = service_settings(
        ProfileSettings,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
        bootstrap=f"127.0.0.1:{free_port()}",
        prefix=topic_prefix,
        run_background=False,
    )
    async with running(create_app(settings)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["errors"][0]["field"] == "database"
        assert ready.json()["errors"][0]["message"].startswith("unreachable")
        assert (await client.get("/healthz")).status_code == 200
