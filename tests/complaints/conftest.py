"""Complaints under test: the app over ASGI (no broker), customers fed through the real
handlers, and the SLA timer driven with a chosen `now`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.complaints.app import create_app
from services.complaints.consumers import HANDLERS
from services.complaints.service import complaints_service
from services.complaints.settings import ComplaintsSettings
from shared.db import create_engine, session_factory
from tests.conftest import ADMIN, DatabaseFactory, EventSender, running, service_settings

# Around the clock, one-hour respond and eight-hour resolve targets, a two-rung ladder.
WALL_CLOCK_POLICY: dict[str, Any] = {
    "targets": [
        {"severity": severity, "tier": "*", "respond_minutes": 60, "resolve_minutes": 480}
        for severity in ("minor", "major", "critical")
    ],
    "escalation": [
        {"name": "team lead", "assign_to": "tina"},
        {"name": "head of service", "assign_to": "hugo"},
    ],
}


@pytest.fixture
async def complaints_db(new_database: DatabaseFactory) -> str:
    return await new_database("complaints")


@pytest.fixture
async def complaints(complaints_db: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = service_settings(
        ComplaintsSettings,
        database_url=complaints_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
    )
    async with running(create_app(settings)) as client:
        yield client


class Events(EventSender):
    """Sends events through complaints' handlers, as the consumer would."""

    def __init__(self, url: str) -> None:
        super().__init__(url, HANDLERS)

    async def customer(self, account_manager: str = "mia", tier: str | None = None) -> uuid.UUID:
        customer_id = uuid.uuid4()
        await self.send(
            customer_id,
            "customer.created",
            {"name": "x", "kind": "company", "account_manager": account_manager},
        )
        if tier is not None:
            await self.tier(customer_id, tier)
        return customer_id

    async def purchase(self, customer_id: uuid.UUID, when: dt.datetime, amount: str = "10") -> None:
        await self.send_envelope(self.purchase_envelope(customer_id, when, amount))


@pytest.fixture
def events(complaints_db: str) -> Events:
    return Events(complaints_db)


async def fire_timers(url: str, now: dt.datetime) -> int:
    """One pass of the SLA timer as if the clock said `now`."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await complaints_service.fire_due(session, now, 1000)
    finally:
        await engine.dispose()


async def use_policy(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
    response = await client.put("/v1/sla-policies", json=document, headers=ADMIN)
    assert response.status_code == 200, response.text


async def open_complaint(
    client: httpx.AsyncClient,
    customer_id: uuid.UUID,
    headers: dict[str, str],
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "customer_id": str(customer_id),
        "channel": "phone",
        "description": "The delivery came three days late.",
        **fields,
    }
    response = await client.post("/v1/complaints", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def move(
    client: httpx.AsyncClient,
    complaint_id: str,
    headers: dict[str, str],
    to: str,
    **fields: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/complaints/{complaint_id}/transitions", json={"to": to, **fields}, headers=headers
    )


# What each step needs to be accepted.
STEP_FIELDS: dict[str, dict[str, Any]] = {
    "received": {},
    "judged": {"severity": "major", "category": "delivery"},
    "decided": {"remedy": "refund the delivery fee", "remedy_by": "dan"},
    "communicated": {"note": "told the customer by phone"},
    "following_up": {},
    "confirmed": {"satisfaction": 5},
    "reopened": {},
    "waiting_on_customer": {"note": "asked for the delivery note"},
}
