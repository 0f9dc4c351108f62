"""Outreach under test: the app over ASGI, customers fed through the real handlers, and
the dispatcher driven by hand against the local provider (tests/provider.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.outreach.app import create_app
from services.outreach.channels import ClientPool, HttpProvider
from services.outreach.consumers import HANDLERS
from services.outreach.dispatcher import Dispatcher
from services.outreach.settings import OutreachSettings
from shared.db import create_engine, session_factory
from tests.conftest import ADMIN, DatabaseFactory, EventSender, running, service_settings
from tests.provider import SECRET, FakeProvider

__all__ = ["SECRET", "FakeProvider"]

# Plans without quiet hours, so tests do not depend on the hour they run at.
ALWAYS_OPEN: dict[str, Any] = {"quiet_hours": {"start": "00:00", "end": "00:00"}}


SHANGHAI = ZoneInfo("Asia/Shanghai")


def born_in(days: int, year: int) -> str:
    """A birth date whose anniversary comes `days` from today in Shanghai."""
    day = dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=days)
    if (day.month, day.day) == (2, 29):
        day += dt.timedelta(days=1)
    return day.replace(year=year).isoformat()


@pytest.fixture
async def outreach_db(new_database: DatabaseFactory) -> str:
    return await new_database("outreach")


@pytest.fixture
async def outreach(outreach_db: str) -> AsyncIterator[httpx.AsyncClient]:
    """Outreach whose planning window is the whole year, so that every contact planned is
    a task at once (tests of the window use `outreach_windowed`)."""
    async with outreach_app(outreach_db, planning_window_days=366) as client:
        yield client


@pytest.fixture
async def outreach_windowed(outreach_db: str) -> AsyncIterator[httpx.AsyncClient]:
    """Outreach with its default planning window."""
    async with outreach_app(outreach_db) as client:
        yield client


@contextlib.asynccontextmanager
async def outreach_app(outreach_db: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = service_settings(
        OutreachSettings,
        database_url=outreach_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
        **options,
    )
    async with running(create_app(settings)) as client:
        for tier in ("A", "B", "*"):
            current = (await client.get(f"/v1/plans/{tier}", headers=ADMIN)).json()["document"]
            response = await client.put(
                f"/v1/plans/{tier}", json={**current, **ALWAYS_OPEN}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        yield client


class Events(EventSender):
    """Sends events through outreach' handlers, as the consumer would."""

    def __init__(self, url: str) -> None:
        super().__init__(url, HANDLERS)

    async def customer(self, **fields: Any) -> uuid.UUID:
        customer_id = uuid.uuid4()
        data = {
            "name": "Harbin Water Co.",
            "kind": "company",
            "account_manager": "mia",
            "timezone": "Asia/Shanghai",
            "consent": {"sms": "granted", "email": "granted", "phone": "granted"},
            **fields,
        }
        await self.send(customer_id, "customer.created", data)
        await self.send(
            customer_id,
            "customer.updated",
            {
                "contacts": [
                    {
                        "id": str(uuid.uuid4()),
                        "name": "Li Wei",
                        "phone": "+86 138 0000 0000",
                        "email": "li.wei@example.com",
                        "birthday": None,
                        "decision_maker": True,
                    }
                ]
            },
        )
        return customer_id


@pytest.fixture
def events(outreach_db: str) -> Events:
    return Events(outreach_db)


async def dispatch(
    url: str,
    provider_url: str | None,
    now: dt.datetime | None = None,
    *,
    timeout_s: float = 2.0,
    provider_batch: int = 1,
    **options: Any,
) -> int:
    """One dispatcher pass (a replica of its own: its own engine and HTTP client)."""
    engine = create_engine(url)
    try:
        async with ClientPool(4) as clients:
            provider = (
                HttpProvider(provider_url, SECRET, timeout_s, clients, provider_batch)
                if provider_url
                else None
            )
            dispatcher = Dispatcher(
                session_factory(engine),
                provider,
                **options,
            )
            seen, _ = await dispatcher.run_once(now or dt.datetime.now(dt.UTC))
            return seen
    finally:
        await engine.dispose()


async def tasks_of(client: httpx.AsyncClient, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/tasks?customer_id={customer_id}&limit=500", headers=ADMIN)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def due_now(client: httpx.AsyncClient, task_id: str) -> None:
    """Bring a task forward to now (as a person would with reschedule)."""
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    response = await client.post(
        f"/v1/tasks/{task_id}/reschedule", json={"due_at": when, "reason": "test"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
