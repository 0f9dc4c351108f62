"""The consumer loop: inbox de-duplication, bounded retries, dead-letter topic, manual commits.

For each message: in one database transaction, record its event id in the inbox (a
repeat finds it there and changes nothing) and run the handler. The offset is committed
to Kafka only after that transaction commits, so a crash replays the message and the
inbox absorbs the replay. A message that keeps failing goes to `<topic>.dlq` with the
error in its headers, and the loop moves on. A database outage is not the message's
fault: it is retried until the database is back, never sent to the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import insert_ignoring_duplicates, session_factory, utcnow
from shared.events import EventData, EventEnvelope, dlq_topic, parse_data
from shared.kafka import ensure_platform_topics, new_producer
from shared.observability import Metrics, correlation_id
from shared.outbox import PENDING_FLAG, inbox
from shared.settings import ServiceSettings

log = logging.getLogger("crm.consumer")

EventHandler = Callable[[AsyncSession, EventEnvelope, EventData], Awaitable[None]]


class PoisonMessage(Exception):
    """A message that no retry can fix (not JSON, not an envelope, data breaks the schema)."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


class EventConsumer:
    """Runs the handlers of one service for the topics they are registered on."""

    def __init__(
        self,
        settings: ServiceSettings,
        engine: AsyncEngine,
        handlers: Mapping[str, EventHandler],
        metrics: Metrics,
        on_events_recorded: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = session_factory(engine)
        self.handlers = dict(handlers)
        self.metrics = metrics
        self.on_events_recorded = on_events_recorded
        self.consumer: AIOKafkaConsumer | None = None
        self._dlq_producer: AIOKafkaProducer | None = None
        self._stopping = False
        self.assigned = asyncio.Event()  # set once the group has given us partitions

    def _event_type(self, topic: str) -> str:
        prefix = self.settings.kafka_topic_prefix
        return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                consumer = await self._start()
                backoff = 0.2
                await self._poll_forever(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer failed, restarting in %.1fs: %r", backoff, exc)
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def stop(self) -> None:
        self._stopping = True
        await self._close()

    async def _start(self) -> AIOKafkaConsumer:
        topics = [self.settings.topic(event_type) for event_type in self.handlers]
        await ensure_platform_topics(self.settings)
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.consumer_group,
            client_id=f"crm-{self.settings.service_name}",
            enable_auto_commit=False,
            # "latest" is unreliable on Tansu (kafka-notes.md); the inbox makes earliest safe.
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            request_timeout_ms=max(
                self.settings.kafka_request_timeout_ms,
                self.settings.kafka_session_timeout_ms + 5000,
            ),
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 0.5)
            raise
        self.consumer = consumer
        return consumer

    async def _close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
        producer, self._dlq_producer = self._dlq_producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def _poll_forever(self, consumer: AIOKafkaConsumer) -> None:
        # The consumer is passed in, not read from the attribute: stop() clears that.
        while not self._stopping:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if consumer.assignment():
                self.assigned.set()
            for partition, messages in batches.items():
                for message in messages:
                    await self.process(message)
                await self._commit(consumer, partition, messages[-1].offset + 1)

    async def _commit(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int
    ) -> None:
        try:
            # Bounded: aiokafka retries a retriable error forever, and a broker that has
            # just restarted can answer "unknown topic" to every commit for a while.
            await asyncio.wait_for(
                consumer.commit({partition: offset}),
                self.settings.kafka_request_timeout_ms / 1000,
            )
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member during a rebalance: it will replay
            # from the last commit there, and the inbox drops what we already applied.
            log.info("offset commit skipped after rebalance: %r", exc)
        except (KafkaError, TimeoutError) as exc:
            # The next batch's commit covers this offset too; a replay meets the inbox.
            log.warning("offset commit failed, carrying on: %r", exc)

    async def process(self, message: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one message exactly once, or dead-letter it."""
        topic = message.topic
        event_type = self._event_type(topic)
        attempts = 0
        outages = 0
        error: BaseException | None = None
        while True:
            attempts += 1
            try:
                outcome = await self._apply(event_type, message)
                self.metrics.events_consumed(event_type, outcome).inc()
                return
            except asyncio.CancelledError:
                raise
            except PoisonMessage as exc:
                error = exc
                break
            except Exception as exc:
                error = exc
                if _is_transient(exc):
                    outages += 1
                    log.warning("database unavailable handling %s, retrying: %r", topic, exc)
                    await asyncio.sleep(min(5.0, 0.1 * 2**outages))
                    attempts -= 1  # not the message's fault: does not count as an attempt
                    continue
                if attempts >= self.settings.consumer_max_attempts:
                    break
                log.warning("handler failed on %s (attempt %d): %r", topic, attempts, exc)
                await asyncio.sleep(self.settings.consumer_retry_backoff_s * attempts)
            finally:
                correlation_id.set(None)
        await self._dead_letter(message, error, attempts)
        self.metrics.events_consumed(event_type, "dead_lettered").inc()

    async def _apply(self, event_type: str, message: ConsumerRecord[bytes, bytes]) -> str:
        try:
            envelope = EventEnvelope.model_validate_json(message.value or b"")
            if envelope.type != event_type:
                raise PoisonMessage(f"envelope type {envelope.type!r} on topic for {event_type!r}")
            data = parse_data(envelope)
        except (ValidationError, ValueError) as exc:
            raise PoisonMessage(str(exc)) from exc
        correlation_id.set(envelope.correlation_id)
        handler = self.handlers[event_type]
        async with self.sessions() as session:
            async with session.begin():
                fresh = await insert_ignoring_duplicates(
                    session,
                    inbox,
                    {"event_id": envelope.id, "event_type": event_type, "handled_at": utcnow()},
                )
                if not fresh:
                    log.debug("duplicate event %s dropped", envelope.id)
                    return "duplicate"
                await handler(session, envelope, data)
            if session.info.pop(PENDING_FLAG, False) and self.on_events_recorded:
                self.on_events_recorded()
        log.debug("handled %s", event_type, extra={"event_id": str(envelope.id)})
        return "applied"

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], error: BaseException | None, attempts: int
    ) -> None:
        if self._dlq_producer is None:
            producer = new_producer(self.settings)
            await producer.start()
            self._dlq_producer = producer
        headers: list[tuple[str, bytes]] = [
            ("x-error", repr(error)[:2000].encode()),
            ("x-original-topic", message.topic.encode()),
            ("x-original-partition", str(message.partition).encode()),
            ("x-original-offset", str(message.offset).encode()),
            ("x-attempts", str(attempts).encode()),
            ("x-consumer-group", self.settings.consumer_group.encode()),
        ]
        await self._dlq_producer.send_and_wait(
            dlq_topic(message.topic), value=message.value, key=message.key, headers=headers
        )
        log.error(
            "message dead-lettered after %d attempts: %r",
            attempts,
            error,
            extra={"topic": message.topic},
        )
