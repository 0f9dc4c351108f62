"""The outreach service's app."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.outreach import repository as repo
from services.outreach.api import router
from services.outreach.channels import HttpProvider
from services.outreach.consumers import HANDLERS
from services.outreach.dispatcher import Dispatcher
from services.outreach.service import outreach_service
from services.outreach.settings import OutreachSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import utcnow

log = logging.getLogger("crm.outreach")
PLANNING_BATCH = 500


def dispatcher_for(runtime: ServiceRuntime, client: httpx.AsyncClient | None) -> Dispatcher:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    provider = (
        HttpProvider(
            settings.provider_url, settings.provider_secret, settings.provider_timeout_s, client
        )
        if settings.provider_url and client is not None
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
    """The scheduler: sleep until the next due task (looking again at least every
    `dispatch_max_sleep_s`), then dispatch what is due; a restart loses nothing."""
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    limits = httpx.Limits(max_connections=settings.delivery_concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        dispatcher = dispatcher_for(runtime, client)
        backoff = settings.dispatch_max_sleep_s
        while True:
            try:
                seen, recorded = await dispatcher.run_once(utcnow())
                if recorded:
                    runtime.relay.wake()
                if seen >= settings.dispatch_batch_size:
                    continue
                async with runtime.sessions() as session:
                    next_at = await repo.tasks.next_due(session)
                delay = settings.dispatch_max_sleep_s
                if next_at is not None:
                    delay = min(delay, max((next_at - utcnow()).total_seconds(), 0.0))
                backoff = settings.dispatch_max_sleep_s
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch pass failed; trying again in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


async def plan_everyone(runtime: ServiceRuntime) -> int:
    """Plan every known customer again (next year's birthdays, new holidays, plan changes)."""
    created = 0
    after = None
    while True:
        async with runtime.sessions() as session, session.begin():
            batch = await repo.recipients.all_ids(session, after, PLANNING_BATCH)
            now = utcnow()
            occasions = await outreach_service.occasions(
                session, now.date() - dt.timedelta(days=1), now.date() + dt.timedelta(days=368)
            )
            for customer_id in batch:
                created += await outreach_service.replan(session, customer_id, now, occasions)
        runtime.relay.wake()
        if len(batch) < PLANNING_BATCH:
            return created
        after = batch[-1]


async def scheduled_planning(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    if not settings.planning_interval_s:
        return
    while True:
        try:
            created = await plan_everyone(runtime)
            log.info("planning: %d tasks created", created)
        except Exception:
            log.exception("planning failed; trying again next time")
        await asyncio.sleep(settings.planning_interval_s)


async def configure(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    outreach_service.holiday_country = settings.holiday_country


DEFINITION = ServiceDefinition(
    name="outreach",
    title="Outreach service",
    description="Service plans per tier, birthdays (Gregorian and lunar), holidays, "
    "repurchase reminders, revisits and club events; guardrails checked at send time; "
    "delivery through a signed HTTP provider or the assignee's worklist.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_startup=configure,
    background=[dispatch_due_tasks, scheduled_planning],
)


def create_app(settings: OutreachSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or OutreachSettings())
