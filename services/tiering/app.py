"""The tiering service's app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from services.tiering.api import router
from services.tiering.consumers import BULK_HANDLERS, HANDLERS, reassess_customers
from services.tiering.feed import TierChangeFeed
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.lease import Lease
from shared.outbox import PENDING_FLAG


async def seed_default_policy(runtime: ServiceRuntime) -> None:
    """A new install ranks customers with the default policy, with no configuration."""
    settings = runtime.settings
    assert isinstance(settings, TieringSettings)
    tiering_service.full_ranking_below = settings.full_ranking_below
    async with runtime.sessions() as session, session.begin():
        await tiering_service.ensure_default_policy(session)


async def scheduled_rerank(runtime: ServiceRuntime) -> None:
    """Re-rank on a schedule (bands and quintiles depend on everyone, so they move even
    when a customer does nothing), fitting the churn model again first when it is due.
    One replica does it: the holder of the schedule's lease, kept across its sleep, so
    another takes over only when the holder stops renewing."""
    log = logging.getLogger("crm.tiering.schedule")
    settings = runtime.settings
    assert isinstance(settings, TieringSettings)
    interval = settings.rerank_interval_s
    if not interval:
        return
    lease = Lease(runtime.sessions, "tiering-schedule", duration_s=interval * 1.5 + 60)
    while True:
        await asyncio.sleep(interval)
        try:
            if not await lease.hold():
                continue
            async with (
                runtime.heavy.slot("The scheduled fit", wait=True),
                runtime.sessions() as session,
                session.begin(),
            ):
                fit = await tiering_service.fit_churn_model_if_due(
                    session, settings.churn_fit_interval_s
                )
            if fit is not None:
                log.info("churn model fitted: used %s (%s)", fit.used, fit.reason or "ahead")
            async with (
                runtime.heavy.slot("The scheduled re-rank", wait=True),
                runtime.sessions() as session,
            ):
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
    bulk_handlers=BULK_HANDLERS,
    concurrent_partitions=True,  # every write is the customer's own; tier history locks
    after_batch=reassess_customers,
    migrations_dir=Path(__file__).parent / "migrations",
    on_startup=seed_default_policy,
    background=[scheduled_rerank],
    event_sources=[TierChangeFeed()],
)


def create_app(settings: TieringSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or TieringSettings())
