"""Tiering under test: a database fed through the real handlers, and the app over ASGI."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.tiering.app import create_app
from services.tiering.consumers import HANDLERS, reassess_customers
from services.tiering.feed import TierChangeFeed
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.db import create_engine, session_factory
from shared.events import EventEnvelope, parse_data
from shared.outbox import PendingEvent
from tests.conftest import DatabaseFactory, running, service_settings

LONG_AGO = "2020-01-01T00:00:00Z"


async def announced(url: str) -> list[PendingEvent]:
    """The `tier.changed` events waiting for the relay (history rows past the feed's
    cursor), made as the relay makes them."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await TierChangeFeed().pending(session, 100_000)
    finally:
        await engine.dispose()


@pytest.fixture
async def tiering_db(new_database: DatabaseFactory) -> str:
    return await new_database("tiering")


@pytest.fixture
async def tiering(tiering_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with tiering_app(tiering_db) as client:
        yield client


@pytest.fixture
async def tiering_placing(tiering_db: str) -> AsyncIterator[httpx.AsyncClient]:
    """Tiering that places customers after events however few are ranked (as a large
    install does), never ranking everyone again."""
    before = tiering_service.full_ranking_below
    async with tiering_app(tiering_db, full_ranking_below=0) as client:
        yield client
    tiering_service.full_ranking_below = before  # the service object outlives the app


def tiering_settings(tiering_db: str, **options: Any) -> TieringSettings:
    """Tiering on its database with no broker and no background work (events are fed
    through the handlers)."""
    settings = service_settings(
        TieringSettings,
        database_url=tiering_db,
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
        **options,
    )
    assert isinstance(settings, TieringSettings)
    return settings


@contextlib.asynccontextmanager
async def tiering_app(tiering_db: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(tiering_settings(tiering_db, **options))) as client:
        yield client


# A threshold rule from the brief: more than 300 a day over three months, counting 26
# working days a month, makes a customer at least an A.
KEY_PARCEL_RULE = {
    "name": "key parcel account",
    "metric": "average_daily_quantity",
    "window_days": 90,
    "op": ">",
    "value": "300",
    "min_tier": "A",
}


class Feed:
    """Sends events through tiering's handlers, as the consumer would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[EventEnvelope] = []

    def customer(self, created: str = LONG_AGO) -> uuid.UUID:
        customer_id = uuid.uuid4()
        self.add(customer_id, "customer.created", {"name": "x", "kind": "company"}, created)
        return customer_id

    def purchase(self, customer_id: uuid.UUID, amount: str, when: str, quantity: str = "1") -> None:
        self.add(
            customer_id,
            "purchase.recorded",
            {
                "purchase_id": str(uuid.uuid4()),
                "amount": amount,
                "currency": "CNY",
                "quantity": quantity,
                "purchased_at": when,
            },
        )

    def payment(self, customer_id: uuid.UUID, amount: str, when: str) -> None:
        self.add(
            customer_id,
            "payment.recorded",
            {
                "payment_id": str(uuid.uuid4()),
                "amount": amount,
                "currency": "CNY",
                "received_at": when,
            },
        )

    def complaint(
        self,
        customer_id: uuid.UUID,
        severity: str,
        *,
        opened: str,
        respond_by: str,
        resolve_by: str,
    ) -> None:
        """A complaint opened with Ann as its owner."""
        self.add(
            customer_id,
            "complaint.opened",
            {
                "complaint_id": str(uuid.uuid4()),
                "severity": severity,
                "owner": "ann",
                "respond_by": respond_by,
                "resolve_by": resolve_by,
            },
            opened,
        )

    def add(
        self,
        customer_id: uuid.UUID,
        event_type: str,
        data: dict[str, Any],
        occurred_at: str | None = None,
    ) -> None:
        self.events.append(
            EventEnvelope(
                id=uuid.uuid4(),
                type=event_type,
                producer="profile",
                customer_id=customer_id,
                occurred_at=dt.datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
                if occurred_at
                else dt.datetime.now(dt.UTC),
                data=data,
            )
        )

    async def apply(self, *, as_one_batch: bool = False, batch_hook: bool = True) -> None:
        """Each event in a transaction of its own, or all in one with one batch hook, as
        the consumer applies a poll. Without the batch hook, the events only fill the
        aggregates (no tiers until a re-rank): for tests of the re-rank itself."""
        engine = create_engine(self.url)
        sessions = session_factory(engine)
        batches = [self.events] if as_one_batch else [[event] for event in self.events]
        try:
            for batch in batches:
                async with sessions() as session, session.begin():
                    for event in batch:
                        await HANDLERS[event.type](session, event, parse_data(event))
                    if batch_hook:
                        await reassess_customers(session, batch)
        finally:
            await engine.dispose()
        self.events = []


@pytest.fixture
def feed(tiering_db: str) -> Feed:
    return Feed(tiering_db)
