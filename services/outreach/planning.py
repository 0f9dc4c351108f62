"""Planning everyone: the daily run that brings every customer's tasks in line with its
plan and the calendar (next year's birthdays, new holidays, plan changes).

A batch of customers is one transaction. On PostgreSQL the customers are split into
ranges of ids, each planned by a process of its own: planning is Python work per
customer, so one process plans on one core however many the replica has, and a process
keeps it off the event loop that serves requests. SQLite has one writer at a time, so it
plans in the service's own process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.outreach import repository as repo
from services.outreach.planner import MIN_OWN_PURCHASES
from services.outreach.service import outreach_service
from services.outreach.settings import OutreachSettings
from shared.app import ServiceRuntime
from shared.db import create_engine, session_factory, utcnow
from shared.heavy import in_processes

PLANNING_BATCH = 10_000


async def plan_everyone(
    runtime: ServiceRuntime, *, fewest_per_process: int = PLANNING_BATCH
) -> int:
    """Plan every known customer again; the number of tasks created. With more than
    `fewest_per_process` customers per process, the processes share them by id range."""
    settings = runtime.settings
    assert isinstance(settings, OutreachSettings)
    now = utcnow()
    processes = settings.planning_processes if runtime.engine.dialect.name == "postgresql" else 1
    bounds: list[uuid.UUID] = []
    if processes > 1:
        async with runtime.sessions() as session:
            bounds = await repo.recipients.split_points(session, processes, fewest_per_process)
    if not bounds:
        created = await plan_range(runtime.sessions, now)
        runtime.relay.wake()
        return created
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
    created_per_range = await in_processes(
        plan_range_in_process,
        [(settings, now, after, upto) for after, upto in ranges],
        while_waiting=runtime.relay.wake,  # each batch's events go out as it commits
    )
    runtime.relay.wake()
    return sum(created_per_range)


async def plan_range(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    after: uuid.UUID | None = None,
    upto: uuid.UUID | None = None,
) -> int:
    """Plan the customers with ids after `after` up to `upto` (unbounded when None), a
    batch per transaction; the calendar and the categories' cycles are read once."""
    async with sessions() as session:
        occasions = await outreach_service.coming_occasions(session, now)
        typical_days = await repo.cycles.typical_days(
            session, await repo.cycles.categories(session), MIN_OWN_PURCHASES
        )
    created = 0
    while True:
        async with sessions() as session, session.begin():
            batch = await repo.recipients.planning_facts(
                session, after=after, upto=upto, limit=PLANNING_BATCH
            )
            created += await outreach_service.plan_customers(
                session, batch, now, occasions, typical_days
            )
        if len(batch) < PLANNING_BATCH:
            return created
        after = batch[-1][0]


def plan_range_in_process(
    settings: OutreachSettings, now: dt.datetime, after: uuid.UUID | None, upto: uuid.UUID | None
) -> int:
    """`plan_range` in a process of its own (started for it), with its own connections."""
    return asyncio.run(_plan_range_alone(settings, now, after, upto))


async def _plan_range_alone(
    settings: OutreachSettings, now: dt.datetime, after: uuid.UUID | None, upto: uuid.UUID | None
) -> int:
    outreach_service.configure(settings)
    engine = create_engine(settings.database_url)
    try:
        return await plan_range(session_factory(engine), now, after, upto)
    finally:
        await engine.dispose()
