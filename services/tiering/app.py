"""The tiering service's app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from services.tiering.api import router
from services.tiering.consumers import HANDLERS, reassess_customers
from services.tiering.feed import TierChangeFeed
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.outbox import PENDING_FLAG


async def seed_default_policy(runtime: ServiceRuntime) -> None:
    """A new install ranks customers with the default policy, with no configuration."""
    settings = runtime.settings
    assert isinstance(settings, TieringSettings)
    tiering_service.full_ranking_below = settings.full_ranking_below
    async with runtime.sessions() as session, session.begin():
        await tiering_service.ensure_default_policy(session)


async def scheduled_rerank(runtime: ServiceRuntime) -> None:
    """Re-rank on a schedule: bands and quintiles depend on everyone, so they move even
    when a customer does nothing."""
    log = logging.getLogger("crm.tiering.schedule")
    interval = getattr(runtime.settings, "rerank_interval_s", 0)
    if not interval:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            async with runtime.sessions() as session:
                async with session.begin():
                    outcome = await tiering_service.recompute(session, None)
                if session.info.pop(PENDING_FLAG, False):
                    runtime.relay.wake()
            log.info(
                "scheduled re-rank: %d customers, %d changed", outcome.customers, outcome.changed
            )
        except Exception:
            log.exception("scheduled re-rank failed; trying again next time")


DEFINITION = ServiceDefinition(
    name="tiering",
    title="Tiering service",
    description="Ranks customers (Pareto, share bands, value matrix, rules, RFM, "
    "relationship thermometer, churn risk) under versioned policies.",
    routers=[router],
    handlers=HANDLERS,
    after_batch=reassess_customers,
    migrations_dir=Path(__file__).parent / "migrations",
    on_startup=seed_default_policy,
    background=[scheduled_rerank],
    event_sources=[TierChangeFeed()],
)


def create_app(settings: TieringSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or TieringSettings())
