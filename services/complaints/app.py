"""The complaints service's app."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi import FastAPI

from services.complaints import repository as repo
from services.complaints.api import router
from services.complaints.consumers import BULK_HANDLERS, HANDLERS
from services.complaints.service import complaints_service
from services.complaints.settings import ComplaintsSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import utcnow
from shared.outbox import PENDING_FLAG
from shared.scheduling import run_when_due


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
    the database; this sleeps until the earliest one, so a deadline fires within seconds
    and a restart loses none."""
    settings = runtime.settings
    assert isinstance(settings, ComplaintsSettings)

    async def next_check() -> dt.datetime | None:
        async with runtime.sessions() as session:
            return await repo.complaints.next_check(session)

    await run_when_due(
        "SLA timer",
        lambda: fire_due_timers(runtime),
        next_check,
        batch_size=settings.timer_batch_size,
        max_sleep_s=settings.timer_max_sleep_s,
    )


DEFINITION = ServiceDefinition(
    name="complaints",
    title="Complaints service",
    description="Complaints: judge, decide, communicate, follow up, confirm; "
    "first-contact ownership, SLA timers on a business calendar, escalation, statistics.",
    routers=[router],
    handlers=HANDLERS,
    bulk_handlers=BULK_HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    background=[sla_timer],
)


def create_app(settings: ComplaintsSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or ComplaintsSettings())
