"""The transactional outbox: events are rows written with the change they announce;
the relay publishes them to Kafka in order, marks them sent, and never drops one.

Also the consumer inbox and the idempotency-key tables, which every service needs:
they are defined once here and copied into each service's metadata for its migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import UTCDateTime, bulk_insert, column_in, new_metadata, session_factory, utcnow
from shared.events import CATALOG
from shared.kafka import new_producer
from shared.lease import Lease, lease_metadata
from shared.observability import Metrics, current_correlation_id
from shared.settings import ServiceSettings
from shared.topics import ensure_platform_topics

log = logging.getLogger("crm.outbox")
# How often the relay counts what waits in each source (a count per source each time).
BACKLOG_MEASURE_S = 5.0

shared_metadata = new_metadata()
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

outbox = Table(
    "outbox",
    shared_metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    Column("message_key", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime, nullable=True),
    Index("ix_outbox_unpublished", "published_at", "id"),
)

inbox = Table(
    "inbox",
    shared_metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("handled_at", UTCDateTime, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    shared_metadata,
    Column("scope", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)


def include_shared_tables(metadata: MetaData) -> None:
    """Copy the outbox, inbox, idempotency and lease tables into a service's metadata."""
    for table in [*shared_metadata.tables.values(), *lease_metadata.tables.values()]:
        if table.name not in metadata.tables:
            table.to_metadata(metadata)


PENDING_FLAG = "outbox_pending"


def outbox_row(
    *,
    producer: str,
    event_type: str,
    customer_id: uuid.UUID,
    data: BaseModel | Mapping[str, Any],
    occurred_at: dt.datetime | None = None,
    validated_json: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The outbox row for one event, its data validated against the catalog model of its type,
    so a producer cannot emit an event that breaks the contract.

    Bulk writers that have already validated the values may pass `validated_json` (the data
    as `model_dump(mode="json")` would give it once written by `event_json`: JSON values,
    UUIDs or datetimes) to skip a second validation, and one `created_at` for the batch.
    """
    if validated_json is None:
        model = CATALOG[event_type]
        if isinstance(data, model):
            payload = data
        else:
            payload = model.model_validate(data if isinstance(data, Mapping) else data.model_dump())
        validated_json = payload.model_dump(mode="json")
    event_id = event_id or uuid.uuid4()
    now = created_at or utcnow()
    return {
        "event_id": event_id,
        "event_type": event_type,
        "message_key": str(customer_id),
        "payload": envelope_json(
            event_id=event_id,
            event_type=event_type,
            occurred_at=occurred_at or now,
            producer=producer,
            customer_id=customer_id,
            correlation_id=current_correlation_id(),
            data=validated_json,
        ),
        "created_at": now,
    }


def envelope_json(
    *,
    event_id: uuid.UUID,
    event_type: str,
    occurred_at: dt.datetime,
    producer: str,
    customer_id: uuid.UUID,
    correlation_id: str | None,
    data: dict[str, Any],
) -> str:
    """The JSON text of an event's envelope around its (already validated) data."""
    return event_json(
        {
            "id": event_id,
            "type": event_type,
            "version": 1,
            "occurred_at": occurred_at,
            "producer": producer,
            "customer_id": customer_id,
            "correlation_id": correlation_id,
            "data": data,
        }
    )


def event_json(value: Any) -> str:
    """JSON text of an envelope or event data; UUIDs and datetimes are written as pydantic's
    JSON mode writes them (UTC as "Z"), by orjson, in C."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_UTC_Z).decode()


def _json_default(value: Any) -> str:
    """What orjson does not write itself, as pydantic's JSON mode writes it: the database
    driver's own UUID subclass, and decimals, as strings."""
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def record_event(
    session: AsyncSession,
    *,
    producer: str,
    event_type: str,
    customer_id: uuid.UUID,
    data: BaseModel | Mapping[str, Any],
    occurred_at: dt.datetime | None = None,
) -> uuid.UUID:
    """Add an event to the outbox inside the caller's transaction; return its id."""
    row = outbox_row(
        producer=producer,
        event_type=event_type,
        customer_id=customer_id,
        data=data,
        occurred_at=occurred_at,
    )
    await session.execute(outbox.insert().values(**row))
    session.info[PENDING_FLAG] = True
    event_id: uuid.UUID = row["event_id"]
    return event_id


async def record_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add many `outbox_row(...)`s in one statement (bulk imports)."""
    if rows:
        await bulk_insert(session, outbox, rows)
        session.info[PENDING_FLAG] = True


@dataclass(frozen=True)
class PendingEvent:
    """An event written with its change and not yet acknowledged by Kafka: `id` orders it
    in its source."""

    id: int
    event_type: str
    message_key: str
    payload: str


class EventSource(Protocol):
    """Where the relay finds events to publish: the outbox table, or a service's own
    table of changes that is its outbox for one event type (see tiering's history)."""

    name: str

    async def backlog(self, session: AsyncSession) -> tuple[int, dt.datetime | None]:
        """How many events wait, and the moment of the oldest (None: none waits)."""

    async def pending(self, session: AsyncSession, limit: int) -> list[PendingEvent]:
        """Up to `limit` unpublished events, in the order they must be published."""

    async def mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        """Record that these events (a prefix of the last `pending`) were acknowledged."""


class OutboxTable:
    """The `outbox` table as a source: rows in id order, each marked when sent."""

    name = "outbox"

    async def backlog(self, session: AsyncSession) -> tuple[int, dt.datetime | None]:
        row = (
            await session.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(
                    outbox.c.published_at.is_(None)
                )
            )
        ).one()
        return int(row[0]), row[1]

    async def pending(self, session: AsyncSession, limit: int) -> list[PendingEvent]:
        rows = await session.execute(
            select(outbox.c.id, outbox.c.event_type, outbox.c.message_key, outbox.c.payload)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        return [PendingEvent(*row) for row in rows.all()]

    async def mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        dialect = session.get_bind().dialect
        await session.execute(
            update(outbox).where(column_in(outbox.c.id, ids, dialect)).values(published_at=utcnow())
        )


class OutboxRelay:
    """Publishes pending events to Kafka in order (the outbox table's rows, and any other
    sources the service has); marks them sent only once acknowledged.

    While the broker is down it keeps retrying with exponential backoff; rows stay in the
    table until published, so nothing is lost when the (in-memory) broker restarts. A lease
    in the database (`shared.lease`) makes one replica the relay, so order is kept; it is
    checked before each batch is sent.
    """

    LEASE_NAME = "outbox-relay"

    def __init__(
        self,
        settings: ServiceSettings,
        engine: AsyncEngine,
        metrics: Metrics,
        sources: Sequence[EventSource] = (),
    ) -> None:
        self.settings = settings
        self.sources: list[EventSource] = [OutboxTable(), *sources]
        self.engine = engine
        self.sessions = session_factory(engine)
        self.metrics = metrics
        self.producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.lease = Lease(self.sessions, self.LEASE_NAME, settings.relay_lease_s)
        self._last_cleanup = 0.0
        self._last_measure = -BACKLOG_MEASURE_S

    def wake(self) -> None:
        """Ask the relay to look at the outbox now (called after a commit that added events)."""
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                if not await self.lease.hold():
                    self.metrics.relay_leader.set(0)
                    await self._idle(self.settings.relay_poll_interval_s * 4)
                    continue
                self.metrics.relay_leader.set(1)
                await self.measure_backlog()
                sent = await self.publish_batch()
                backoff = 0.1
                if sent < self.settings.relay_batch_size:
                    await self._cleanup_published()
                    await self._idle(self.settings.relay_poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.relay_failures.inc()
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await self._drop_producer()
                await self._idle(backoff)
                backoff = min(backoff * 2, self.settings.relay_max_backoff_s)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self._drop_producer()
        self.metrics.relay_leader.set(0)
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def publish_batch(self) -> int:
        """Publish up to one batch of pending events from each source; return how many
        were sent."""
        sent = 0
        for source in self.sources:
            sent += await self._publish_from(source)
        return sent

    async def _publish_from(self, source: EventSource) -> int:
        # Expired or nearly so (another replica may be taking over): renew before sending.
        if not self.lease.valid() and not await self.lease.hold():
            return 0
        async with self.sessions() as session:
            events = await source.pending(session, self.settings.relay_batch_size)
        if not events:
            return 0
        producer = await self._producer()
        futures = [
            await producer.send(
                self.settings.topic(event.event_type),
                value=event.payload.encode(),
                key=event.message_key.encode(),
            )
            for event in events
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        # Mark only the unbroken prefix that Kafka acknowledged: what follows a failure is
        # sent again (consumers drop repeats), so no event is ever lost or reordered away.
        acknowledged: list[PendingEvent] = []
        failure: BaseException | None = None
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                failure = result
                break
            acknowledged.append(event)
        if acknowledged:
            async with self.sessions() as session, session.begin():
                await source.mark_sent(session, [event.id for event in acknowledged])
            for event in acknowledged:
                self.metrics.events_published(event.event_type).inc()
        if failure is not None:
            raise failure
        return len(events)

    async def measure_backlog(self) -> None:
        """Count what waits in each source, whether or not the broker answers (so an
        outage shows as a growing backlog), at most every few seconds."""
        now = asyncio.get_running_loop().time()
        if now - self._last_measure < BACKLOG_MEASURE_S:
            return
        self._last_measure = now
        async with self.sessions() as session:
            for source in self.sources:
                count, oldest = await source.backlog(session)
                self.metrics.outbox_backlog(source.name).set(count)
                age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
                self.metrics.outbox_backlog_age(source.name).set(max(age, 0.0))

    async def _producer(self) -> AIOKafkaProducer:
        producer = self.producer
        if producer is None:
            producer = new_producer(self.settings)
            try:
                await producer.start()
                # Topics get their final partition count before anything is sent to them.
                await ensure_platform_topics(self.settings)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 2)
                raise
            self.producer = producer
        # The local, not the attribute: stop() may clear the attribute meanwhile.
        return producer

    async def _drop_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _cleanup_published(self) -> None:
        """At most once a minute, on the relay leader only: delete what has served its
        time (published outbox rows, inbox ids and idempotency keys past their horizons)."""
        now = asyncio.get_running_loop().time()
        if now - self._last_cleanup < 60:
            return
        self._last_cleanup = now
        async with self.sessions() as session, session.begin():
            await prune(session, self.settings, utcnow())


async def prune(session: AsyncSession, settings: ServiceSettings, now: dt.datetime) -> None:
    """Published outbox rows older than `outbox_retention_hours`; inbox ids older than
    `inbox_retention_hours` (keep it longer than the topics' retention, or a redelivered
    event would be applied again); idempotency keys older than
    `idempotency_retention_hours` (a retry after that creates anew)."""

    def before(hours: float) -> dt.datetime:
        return now - dt.timedelta(hours=hours)

    await session.execute(
        delete(outbox).where(
            outbox.c.published_at.is_not(None),
            outbox.c.published_at < before(settings.outbox_retention_hours),
        )
    )
    await session.execute(
        delete(inbox).where(inbox.c.handled_at < before(settings.inbox_retention_hours))
    )
    await session.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.created_at < before(settings.idempotency_retention_hours)
        )
    )
