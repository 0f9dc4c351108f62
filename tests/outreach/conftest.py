"""Outreach under test: the app over ASGI, customers fed through the real handlers, the
dispatcher driven by hand, and a real local HTTP server standing in for the SMS/email
provider (one path answers, one times out, one fails then succeeds; each counts what it
sent by idempotency key, as a real gateway would)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.outreach.app import create_app
from services.outreach.channels import SIGNATURE_HEADER, HttpProvider, sign
from services.outreach.consumers import HANDLERS
from services.outreach.dispatcher import Dispatcher
from services.outreach.settings import OutreachSettings
from shared.db import create_engine, session_factory
from shared.events import EventEnvelope, parse_data
from tests.conftest import ADMIN, DatabaseFactory, running, service_settings

SECRET = "provider-shared-secret"
# Plans without quiet hours, so tests do not depend on the hour they run at.
ALWAYS_OPEN: dict[str, Any] = {"quiet_hours": {"start": "00:00", "end": "00:00"}}


@dataclass
class FakeProvider:
    """What the gateway saw: every request, and the messages it sent (once per key)."""

    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    failed_once: set[str] = field(default_factory=set)

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        key = request.headers.get("Idempotency-Key", "")
        if request.headers.get(SIGNATURE_HEADER) != sign(SECRET, body):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        mode = request.path_params["mode"]
        self.requests.append((key, await request.json()))
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "flaky" and key not in self.failed_once:
            self.failed_once.add(key)
            return JSONResponse({"error": "try later"}, status_code=503)
        if mode == "refuse":
            return JSONResponse({"error": "unknown number"}, status_code=422)
        if key not in self.sent:  # a retried request is recognised, not sent again
            self.sent[key] += 1
        return JSONResponse({"message_id": f"m-{key}", "duplicate": len(self.requests) > 1})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    app = Starlette(routes=[Route("/{mode}", fake.handle, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    await task


@pytest.fixture
async def outreach_db(new_database: DatabaseFactory) -> str:
    return await new_database("outreach")


@pytest.fixture
async def outreach(outreach_db: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = service_settings(
        OutreachSettings,
        database_url=outreach_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
    )
    async with running(create_app(settings)) as client:
        for tier in ("A", "B", "*"):
            current = (await client.get(f"/v1/plans/{tier}", headers=ADMIN)).json()["document"]
            response = await client.put(
                f"/v1/plans/{tier}", json={**current, **ALWAYS_OPEN}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        yield client


class Events:
    """Sends events through outreach's handlers, as the consumer would."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(
        self,
        customer_id: uuid.UUID,
        event_type: str,
        data: dict[str, Any],
        occurred_at: dt.datetime | None = None,
    ) -> None:
        event = EventEnvelope(
            id=uuid.uuid4(),
            type=event_type,
            producer="profile",
            customer_id=customer_id,
            occurred_at=occurred_at or dt.datetime.now(dt.UTC),
            data=data,
        )
        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as session, session.begin():
                await HANDLERS[event.type](session, event, parse_data(event))
        finally:
            await engine.dispose()

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

    async def tier(self, customer_id: uuid.UUID, tier: str, previous: str | None = None) -> None:
        await self.send(
            customer_id,
            "tier.changed",
            {
                "previous_tier": previous,
                "tier": tier,
                "policy_id": str(uuid.uuid4()),
                "policy_version": 1,
                "changed_at": dt.datetime.now(dt.UTC).isoformat(),
            },
        )


@pytest.fixture
def events(outreach_db: str) -> Events:
    return Events(outreach_db)


async def dispatch(
    url: str,
    provider_url: str | None,
    now: dt.datetime | None = None,
    *,
    timeout_s: float = 2.0,
    **options: Any,
) -> int:
    """One dispatcher pass (a replica of its own: its own engine and HTTP client)."""
    engine = create_engine(url)
    try:
        async with httpx.AsyncClient() as client:
            dispatcher = Dispatcher(
                session_factory(engine),
                HttpProvider(provider_url, SECRET, timeout_s, client) if provider_url else None,
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
