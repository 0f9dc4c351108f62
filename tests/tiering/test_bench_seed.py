"""The re-rank, latency and churn benchmarks seed tiering's tables directly with COPY, as
the consumer would have built them: this keeps that seed in step with the schema (a
column a migration drops fails here, not in an hour-long benchmark run) and laid out as
a table months old is."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from bench.tiering import seed_into
from services.tiering.models import epoch_day
from services.tiering.ranking.store import rank
from services.tiering.schemas import DEFAULT_POLICY
from shared.db import create_engine, session_factory
from tests.conftest import DatabaseFactory


async def test_the_benchmark_seed_fits_the_schema_and_ranks(new_database: DatabaseFactory) -> None:
    url = await new_database("tiering")
    if "sqlite" in url:
        pytest.skip("the benchmarks seed PostgreSQL with COPY")
    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await seed_into(conn, customers=200, purchases=3000, today=epoch_day(now))
        # Laid out as months of events leave it (a plain scan reads in physical order).
        keys = [row["key"] for row in await conn.fetch("SELECT key FROM customer_aggregates")]
        days = [row["day"] for row in await conn.fetch("SELECT day FROM daily_activity")]
    finally:
        await conn.close()
    assert sorted(keys) == list(range(1, 201)) and keys != sorted(keys)
    assert days == sorted(days)
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            ranking = await rank(session, DEFAULT_POLICY, now)
    finally:
        await engine.dispose()
    assert ranking.customers == 200
    assert sum(count for count, _ in ranking.per_tier.values()) == 200
