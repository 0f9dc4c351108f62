"""The complaints service's app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from services.complaints import repository as repo
from services.complaints.api import router
from services.complaints.consumers import HANDLERS
from services.complaints.service import complaints_service
from services.complaints.settings import ComplaintsSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import utcnow
from shared.outbox import PENDING_FLAG

log = logging.getLogger("crm.complaints.timer")


async def fire_due_timers(runtime: ServiceRuntime) -> int:
    """One pass of the SLA timer: act on the clocks due by now; the complaints seen."""
    settings = runtime.settings
    assert isinstance(settings, ComplaintsSettings)
    async with runtime.sessions() as session:
        async with session.begin():
            seen = await complaints_service.fire_due(session, utcnow(), settings.timer_batch_size)
        if session.info.pop(PENDING_FLAG, False):
            runtime.relay.wake()
    return seen


async def sla_timer(runtime: ServiceRuntime) -> None:
    """Durable SLA timers: each complaint keeps the next moment its clock changes state in
    the database; this sleeps until the earliest one (looking again at least every
    `timer_max_sleep_s`), so a deadline fires within seconds and a restart loses none."""
    settings = runtime.settings
    assert isinstance(settings, ComplaintsSettings)
    backoff = settings.timer_max_sleep_s
    while True:
        try:
            if await fire_due_timers(runtime) >= settings.timer_batch_size:
                continue  # more are due: no sleep
            async with runtime.sessions() as session:
                next_at = await repo.complaints.next_check(session)
            delay = settings.timer_max_sleep_s
            if next_at is not None:
                delay = min(delay, max((next_at - utcnow()).total_seconds(), 0.0))
            backoff = settings.timer_max_sleep_s
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("SLA timer pass failed; trying again in %.1f s", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


DEFINITION = ServiceDefinition(
    name="complaints",
    title="Complaints service",
    description="Complaints: judge, decide, communicate, follow up, confirm; "
    "first-contact ownership, SLA timers on a business calendar, escalation, statistics.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    background=[sla_timer],
)


def create_app(settings: ComplaintsSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or ComplaintsSettings())
