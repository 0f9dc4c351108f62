"""Planning everyone split over processes by id range (PostgreSQL) plans exactly what one
process plans: every customer once, each task with its one `outreach.scheduled`."""

from __future__ import annotations

from typing import Any

import pytest

import services.outreach.planning as planning
from services.outreach.app import create_app
from services.outreach.settings import OutreachSettings
from tests.conftest import query, service_settings
from tests.outreach.conftest import Events, born_in

TASKS = "SELECT customer_id, occasion, due_at, channel, assignee FROM tasks"


async def plan_all(url: str, processes: int) -> tuple[set[tuple[Any, ...]], int]:
    """Plan everyone afresh (no task before): the pending tasks and the number created."""
    for table in ("tasks", "outbox"):
        await query(url, f"DELETE FROM {table}")
    settings = service_settings(
        OutreachSettings,
        database_url=url,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
        planning_window_days=366,
        planning_processes=processes,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        created = await planning.plan_everyone(app.state.runtime, fewest_per_process=10)
    [(scheduled,)] = await query(
        url, "SELECT count(*) FROM outbox WHERE event_type = 'outreach.scheduled'"
    )
    tasks = {tuple(row) for row in await query(url, TASKS)}
    assert created == len(tasks) == scheduled
    return tasks, created


async def test_planning_in_processes_plans_what_one_process_plans(
    outreach_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Events(outreach_db)
    for n in range(45):
        await events.customer(
            birthday=born_in(n % 40, 1970 + n), birthday_calendar="lunar" if n % 3 else "gregorian"
        )
    split: list[int] = []
    real = planning.in_processes

    async def counted(work: Any, arguments: Any, **options: Any) -> Any:
        split.append(len(arguments))
        return await real(work, arguments, **options)

    monkeypatch.setattr(planning, "in_processes", counted)
    alone, created_alone = await plan_all(outreach_db, processes=1)
    shared, created_shared = await plan_all(outreach_db, processes=3)
    # A birthday, a revisit and a survey each at least.
    assert created_shared == created_alone >= 45 * 3
    assert shared == alone
    # PostgreSQL splits the customers over three processes; SQLite plans in its own.
    postgres = outreach_db.startswith("postgresql")
    assert split == ([3] if postgres else [])
    [(customers,)] = await query(outreach_db, "SELECT count(DISTINCT customer_id) FROM tasks")
    assert customers == 45
