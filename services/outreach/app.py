"""The outreach service's app."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from fastapi import FastAPI

from services.outreach import repository as repo
from services.outreach.api import router
from services.outreach.channels import ClientPool, HttpProvider
from services.outreach.consumers import BULK_HANDLERS, HANDLERS
from services.outreach.dispatcher import Dispatcher
from services.outreach.planning import plan_everyone
from services.outreach.service import outreach_service
from services.outreach.settings import OutreachSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import utcnow
from shared.lease import Lease
from shared.scheduling import run_when_due

log = logging.getLogger("crm.outreach")


def dispatcher_for(runtime: ServiceRuntime, clients: ClientPool | None) -> Dispatcher:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    provider = (
        HttpProvider(
            settings.provider_url,
            settings.provider_secret,
            settings.provider_timeout_s,
            clients,
            settings.provider_batch_size,
        )
        if settings.provider_url and clients is not None
        else None
    )
    return Dispatcher(
        runtime.sessions,
        provider,
        batch_size=settings.dispatch_batch_size,
        lease=dt.timedelta(seconds=settings.delivery_lease_s),
        max_attempts=settings.delivery_max_attempts,
        retry_backoff=dt.timedelta(seconds=settings.delivery_retry_backoff_s),
        concurrency=settings.delivery_concurrency,
    )


async def dispatch_due_tasks(runtime: ServiceRuntime) -> None:
    """The scheduler: dispatch what is due, then sleep until the next due task; a restart
    loses nothing (due tasks live in the database)."""
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    async with ClientPool(settings.delivery_concurrency) as clients:
        dispatcher = dispatcher_for(runtime, clients)

        async def dispatch() -> int:
            seen, recorded = await dispatcher.run_once(utcnow())
            if recorded:
                runtime.relay.wake()
            return seen

        async def next_due() -> dt.datetime | None:
            async with runtime.sessions() as session:
                return await repo.tasks.next_due(session)

        await run_when_due(
            "dispatcher",
            dispatch,
            next_due,
            batch_size=settings.dispatch_batch_size,
            max_sleep_s=settings.dispatch_max_sleep_s,
        )


async def scheduled_planning(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    interval = settings.planning_interval_s
    if not interval:
        return
    # One replica plans: the holder of the lease, kept across its sleep (two at once would
    # do the work twice and collide on the same new tasks).
    lease = Lease(runtime.sessions, "outreach-planning", duration_s=interval * 1.5 + 60)
    while True:
        try:
            if await lease.hold():
                created = await plan_everyone(runtime)
                log.info("planning: %d tasks created", created)
        except Exception:
            log.exception("planning failed; trying again next time")
        await asyncio.sleep(interval)


async def configure(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    outreach_service.configure(settings)


DEFINITION = ServiceDefinition(
    name="outreach",
    title="Outreach service",
    description="Service plans per tier, birthdays (Gregorian and lunar), holidays, "
    "repurchase reminders, revisits and club events; guardrails checked at send time; "
    "delivery through a signed HTTP provider or the assignee's worklist.",
    routers=[router],
    handlers=HANDLERS,
    bulk_handlers=BULK_HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_startup=configure,
    background=[dispatch_due_tasks, scheduled_planning],
)


def create_app(settings: OutreachSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or OutreachSettings())
