"""The consumer loop on the real broker: repeats are no-ops, poison goes to the DLQ,
failing handlers are retried a bounded number of times, later messages still flow."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.app import create_app as create_tiering
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.consumer import EventConsumer
from shared.db import create_engine
from shared.events import EventData, EventEnvelope
from shared.observability import Metrics
from shared.topics import ensure_platform_topics
from tests.conftest import (
    ADMIN,
    DatabaseFactory,
    eventually,
    read_topic,
    running,
    service_settings,
)


def purchase_envelope(customer_id: uuid.UUID, amount: str = "10.00") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "purchase.recorded",
        "version": 1,
        "occurred_at": "2026-11-01T00:00:00Z",
        "producer": "profile",
        "customer_id": str(customer_id),
        "correlation_id": "corr-test",
        "data": {
            "purchase_id": str(uuid.uuid4()),
            "amount": amount,
            "currency": "CNY",
            "quantity": "1",
            "purchased_at": "2026-11-01T00:00:00Z",
        },
    }


async def consumer_settings(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str, **overrides: Any
) -> TieringSettings:
    """Settings of a tiering consumer on a database and topics of its own (made now)."""
    settings = service_settings(
        TieringSettings,
        database_url=await new_database("tiering"),
        bootstrap=broker.bootstrap,
        prefix=topic_prefix,
        **overrides,
    )
    await ensure_platform_topics(settings)
    return settings


@asynccontextmanager
async def producer_for(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send(producer: AIOKafkaProducer, topic: str, key: uuid.UUID, value: bytes) -> None:
    await producer.send_and_wait(topic, value=value, key=str(key).encode())


async def test_repeated_event_changes_nothing(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix)
    customer_id = uuid.uuid4()
    event = json.dumps(purchase_envelope(customer_id, "25.50")).encode()
    async with running(create_tiering(settings)) as tiering, producer_for(broker) as producer:
        topic = settings.topic("purchase.recorded")
        for _ in range(3):
            await send(producer, topic, customer_id, event)
        marker = purchase_envelope(customer_id, "1.00")  # a distinct event after the repeats
        await send(producer, topic, customer_id, json.dumps(marker).encode())

        async def both_applied() -> Any:
            view = await tiering.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
            ok = view.status_code == 200 and view.json()["aggregates"]["purchase_count"] == 2
            return view.json() if ok else None

        view = await eventually(both_applied)
        assert view["aggregates"]["revenue"] == "26.50"
        metrics = (await tiering.get("/metrics")).text
        assert (
            'crm_events_consumed_total{outcome="duplicate",topic="purchase.recorded"} 2.0'
            in metrics
        )


async def test_poison_message_goes_to_dlq_and_later_messages_flow(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix)
    customer_id = uuid.uuid4()
    topic = settings.topic("purchase.recorded")
    bad_schema = purchase_envelope(customer_id)
    bad_schema["data"]["amount"] = "lots"
    async with running(create_tiering(settings)) as tiering, producer_for(broker) as producer:
        await send(producer, topic, customer_id, b"{not json")
        await send(producer, topic, customer_id, json.dumps(bad_schema).encode())
        await send(
            producer, topic, customer_id, json.dumps(purchase_envelope(customer_id)).encode()
        )

        async def good_one_applied() -> bool:
            view = await tiering.get(f"/v1/customers/{customer_id}/tier", headers=ADMIN)
            return view.status_code == 200 and view.json()["aggregates"]["purchase_count"] == 1

        await eventually(good_one_applied)
    dead = await read_topic(broker, f"{topic}.dlq", expected=2)
    assert [message.value for message in dead] == [b"{not json", json.dumps(bad_schema).encode()]
    headers = dict(dead[0].headers)
    assert headers["x-original-topic"] == topic.encode()
    assert b"Invalid JSON" in headers["x-error"] or b"json" in headers["x-error"].lower()
    assert b"amount" in dict(dead[1].headers)["x-error"]


async def test_failing_handler_is_retried_then_dead_lettered(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix, consumer_max_attempts=3)
    calls: list[str] = []
    poison_customer, good_customer = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(settings.database_url)

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        calls.append(str(event.customer_id))
        await _probe(session, engine, "probe")
        if event.customer_id == poison_customer:
            raise RuntimeError("handler cannot cope")

    topic = settings.topic("purchase.recorded")
    async with producer_for(broker) as producer:
        for customer in (poison_customer, good_customer):
            await send(producer, topic, customer, json.dumps(purchase_envelope(customer)).encode())
    async with consuming(settings, engine, {"purchase.recorded": record}):
        # The two customers' events may sit on different partitions: wait for both ends.
        await eventually(lambda: _counted(engine, "probe", 1))
        dead = await read_topic(broker, f"{topic}.dlq", expected=1)
    assert calls.count(str(poison_customer)) == 3
    assert len(dead) == 1
    assert dict(dead[0].headers)["x-attempts"] == b"3"
    assert b"handler cannot cope" in dict(dead[0].headers)["x-error"]
    # The failed attempts rolled back their writes; only the good event's write stayed.
    assert await _count(engine, "probe") == 1
    await engine.dispose()


class _CommitThatNeverAnswers:
    """Stands in for the Kafka client when a restarted broker keeps refusing a commit
    (aiokafka then retries forever)."""

    def __init__(self) -> None:
        self.calls = 0

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.calls += 1
        await asyncio.Event().wait()


async def test_offset_commit_that_never_answers_is_given_up(tmp_path: Any) -> None:
    settings = service_settings(
        TieringSettings,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        bootstrap="127.0.0.1:9",
        prefix="unused.",
        kafka_request_timeout_ms=200,
    )
    engine = create_engine(settings.database_url)
    consumer = EventConsumer(settings, engine, {}, Metrics("test"))
    stuck = _CommitThatNeverAnswers()
    from aiokafka import TopicPartition

    await asyncio.wait_for(
        consumer._commit(stuck, TopicPartition("t", 0), 5),  # type: ignore[arg-type]
        timeout=5,
    )
    await engine.dispose()
    assert stuck.calls == 1


@asynccontextmanager
async def consuming(
    settings: TieringSettings,
    engine: Any,
    handlers: dict[str, Any],
    after_batch: Any = None,
    concurrent_partitions: bool = False,
) -> AsyncIterator[None]:
    """A consumer running over the topics for the duration of the block. Wait inside for
    committed writes: leaving the block may cut a transaction still in flight."""
    consumer = EventConsumer(
        settings,
        engine,
        handlers,
        Metrics("test"),
        after_batch=after_batch,
        concurrent_partitions=concurrent_partitions,
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield
    finally:
        await consumer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _probe(session: AsyncSession, engine: Any, kind: str) -> None:
    """A write the transaction keeps or loses: an inbox row of its own kind."""
    await session.execute(
        sa.text("INSERT INTO inbox (event_id, event_type, handled_at) VALUES (:i, :k, :t)"),
        {
            "i": uuid.uuid4().hex if engine.dialect.name == "sqlite" else str(uuid.uuid4()),
            "k": kind,
            "t": dt.datetime.now(dt.UTC),
        },
    )


async def _counted(engine: Any, kind: str, expected: int) -> bool:
    """Whether the committed writes of this kind have reached `expected`."""
    return await _count(engine, kind) >= expected


async def _count(engine: Any, kind: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT count(*) FROM inbox WHERE event_type = :k"), {"k": kind}
        )
        return int(found.scalar() or 0)


async def test_a_polls_events_share_one_transaction_and_one_batch_hook(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix)
    customer = uuid.uuid4()
    sent = [purchase_envelope(customer, f"{n}.00") for n in range(1, 21)]
    async with producer_for(broker) as producer:
        for envelope in sent:  # one customer: one partition, all there before the poll
            await send(
                producer,
                settings.topic("purchase.recorded"),
                customer,
                json.dumps(envelope).encode(),
            )
    handled: list[str] = []
    batches: list[list[str]] = []
    engine = create_engine(settings.database_url)

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        handled.append(str(event.id))
        await _probe(session, engine, "probe")

    async def hook(session: AsyncSession, events: list[EventEnvelope]) -> None:
        batches.append([str(event.id) for event in events])
        await _probe(session, engine, "hook")

    async with consuming(settings, engine, {"purchase.recorded": record}, after_batch=hook):
        await eventually(lambda: _counted(engine, "probe", 20))
    assert handled == [envelope["id"] for envelope in sent]  # each once, in order
    assert [event for batch in batches for event in batch] == handled
    assert max(len(batch) for batch in batches) > 1  # many events, one hook call
    assert await _count(engine, "probe") == 20
    assert await _count(engine, "hook") == len(batches)
    await engine.dispose()


def payment_envelope(customer_id: uuid.UUID) -> dict[str, Any]:
    return {
        **purchase_envelope(customer_id),
        "id": str(uuid.uuid4()),
        "type": "payment.recorded",
        "data": {
            "payment_id": str(uuid.uuid4()),
            "amount": "5.00",
            "currency": "CNY",
            "received_at": "2026-11-02T00:00:00Z",
        },
    }


async def test_partitions_applied_at_once_apply_each_event_once_in_each_customers_order(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix)
    customers = [uuid.uuid4() for _ in range(40)]
    sent = {
        c: [purchase_envelope(c, f"{n}.00") for n in range(4)] + [payment_envelope(c)]
        for c in customers
    }
    async with producer_for(broker) as producer:
        for customer, envelopes in sent.items():
            for envelope in envelopes:
                topic = settings.topic(envelope["type"])
                await send(producer, topic, customer, json.dumps(envelope).encode())
    engine = create_engine(settings.database_url)
    postgres = engine.dialect.name == "postgresql"  # SQLite has one writer: one at a time
    handled: dict[uuid.UUID, list[str]] = {customer: [] for customer in customers}
    in_flight: list[set[uuid.UUID]] = []
    overlapped: list[bool] = []
    shared_customers: list[set[uuid.UUID]] = []

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        handled[event.customer_id].append(str(event.id))
        await _probe(session, engine, "probe")

    async def hook(session: AsyncSession, events: list[EventEnvelope]) -> None:
        mine = {event.customer_id for event in events}
        overlapped.append(bool(in_flight))
        shared_customers.extend(mine & other for other in in_flight if mine & other)
        in_flight.append(mine)
        await asyncio.sleep(0.2)  # a batch's slow part: another partition's runs meanwhile
        in_flight.remove(mine)

    handlers = {"purchase.recorded": record, "payment.recorded": record}
    async with consuming(
        settings, engine, handlers, after_batch=hook, concurrent_partitions=postgres
    ):
        await eventually(lambda: _counted(engine, "probe", 200))
    assert await _count(engine, "probe") == 200  # each once
    for customer, envelopes in sent.items():  # each topic's events in their order
        purchases = [e["id"] for e in envelopes if e["type"] == "purchase.recorded"]
        assert [e for e in handled[customer] if e in purchases] == purchases
        assert set(handled[customer]) == {e["id"] for e in envelopes}
    assert any(overlapped) == postgres
    assert not shared_customers  # one customer's partitions (one number) never at once
    await engine.dispose()


async def test_a_failing_event_rolls_back_its_batch_and_the_rest_is_applied_once_in_order(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix, consumer_max_attempts=3)
    customer = uuid.uuid4()
    sent = [purchase_envelope(customer, f"{n}.00") for n in range(1, 6)]
    failing = sent[2]["id"]
    topic = settings.topic("purchase.recorded")
    async with producer_for(broker) as producer:
        for envelope in sent:
            await send(producer, topic, customer, json.dumps(envelope).encode())
    calls: list[str] = []
    engine = create_engine(settings.database_url)

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        calls.append(str(event.id))
        await _probe(session, engine, f"probe-{event.id}")
        if str(event.id) == failing:
            raise RuntimeError("handler cannot cope")

    async with consuming(settings, engine, {"purchase.recorded": record}):
        await eventually(lambda: _counted(engine, f"probe-{sent[-1]['id']}", 1))
        dead = await read_topic(broker, f"{topic}.dlq", expected=1)
    assert json.loads(dead[0].value)["id"] == failing
    assert dict(dead[0].headers)["x-attempts"] == b"3"
    assert calls.count(failing) == 3  # once in the batch, twice alone
    # Every other event's write was committed exactly once, the failing one's never.
    for envelope in sent:
        expected = 0 if envelope["id"] == failing else 1
        assert await _count(engine, f"probe-{envelope['id']}") == expected
    # Order kept: the failing event's attempts come after those before it and before
    # those after it were applied for good.
    last_before = max(i for i, c in enumerate(calls) if c == sent[1]["id"])
    first_after = max(i for i, c in enumerate(calls) if c == sent[3]["id"])
    failing_calls = [i for i, c in enumerate(calls) if c == failing]
    assert last_before < failing_calls[1] and failing_calls[-1] < first_after
    await engine.dispose()


async def test_a_consumer_that_stops_receiving_is_restarted_and_an_idle_one_is_not(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    settings = await consumer_settings(
        broker, new_database, topic_prefix, consumer_stall_check_s=0.5
    )
    topic = settings.topic("purchase.recorded")
    engine = create_engine(settings.database_url)

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        await _probe(session, engine, "probe")

    metrics = Metrics("test")
    consumer = EventConsumer(settings, engine, {"purchase.recorded": record}, metrics)
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.assigned.wait(), 60)
        first = consumer.consumer
        assert first is not None
        await asyncio.sleep(2.5)  # several checks with nothing waiting: no restart
        assert consumer.consumer is first
        # A client that polls but never fetches again (what aiokafka#703 looks like).
        first.pause(*first.assignment())
        async with producer_for(broker) as producer:
            customer = uuid.uuid4()
            await send(producer, topic, customer, json.dumps(purchase_envelope(customer)).encode())
        await eventually(lambda: _counted(engine, "probe", 1))
        assert consumer.consumer is not first
        assert metrics.consumer_restarts("stalled")._value.get() >= 1
    finally:
        await consumer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await _count(engine, "probe") == 1
    await engine.dispose()
