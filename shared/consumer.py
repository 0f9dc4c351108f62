"""The consumer loop: inbox de-duplication, bounded retries, dead-letter topic, manual commits.

The messages a poll brings from one partition are applied in one database transaction:
record their event ids in the inbox with one statement (a repeat finds its id there and
changes nothing), run each new event's handler, or, for an event type with a bulk
handler, that handler once with all of them (tiering folds purchases per customer and
day); then the service's batch hook (tiering reassesses each customer once per batch, not
once per event). The offset is committed to Kafka only after that
transaction commits, so a crash replays the messages and the inbox absorbs the replay.

When a message fails, the batch rolls back; the messages before it are applied again as
a batch, the failing one alone with bounded retries, in partition order. A message that
keeps failing (or cannot be parsed) goes to `<topic>.dlq` with the error in its headers,
and the loop moves on. A database outage is not the message's fault: it is retried until
the database is back, never sent to the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.db import insert_new_columns, session_factory, utcnow
from shared.events import EventData, EventEnvelope, dlq_topic, parse_event
from shared.kafka import client_options, new_producer
from shared.observability import Metrics, correlation_id
from shared.outbox import PENDING_FLAG, inbox
from shared.settings import ServiceSettings
from shared.topics import ensure_platform_topics

log = logging.getLogger("crm.consumer")

EventHandler = Callable[[AsyncSession, EventEnvelope, EventData], Awaitable[None]]
# Runs once per batch, after the handlers, in the same transaction, with the events applied.
BatchHook = Callable[[AsyncSession, list[EventEnvelope]], Awaitable[None]]
# For event types whose effects fold (sums per customer and day): one call per batch with
# every new event of that type, in order, instead of the per-event handler.
BulkHandler = Callable[[AsyncSession, list[tuple[EventEnvelope, EventData]]], Awaitable[None]]


def one_at_a_time(bulk: BulkHandler) -> EventHandler:
    """The per-event handler of a type with a bulk handler: that handler with a batch of
    one (a type's events are handled one way, whichever path they take)."""

    async def handle(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        await bulk(session, [(event, data)])

    return handle


class PoisonMessage(Exception):
    """A message that no retry can fix (not JSON, not an envelope, data breaks the schema)."""


class ConsumerStalled(Exception):
    """Messages wait on the consumer's partitions but its polls bring none: restart it."""


class _BatchFailed(Exception):
    """The message at `index` of a batch failed (the batch rolled back)."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


@dataclass
class _Parsed:
    message: ConsumerRecord[bytes, bytes]
    event_type: str
    envelope: EventEnvelope
    data: EventData


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


async def _wait_out_outage(outages: int, what: str, error: BaseException) -> None:
    """Back off (exponentially, up to 5 s) before trying again after a database outage."""
    log.warning("database unavailable handling %s, retrying: %r", what, error)
    await asyncio.sleep(min(5.0, 0.1 * 2**outages))


class _StallWatch:
    """Notices a consumer that polls but never receives what is waiting for it.

    aiokafka's consumer can stay silent forever after every broker went away and came
    back (aio-libs/aiokafka#703). While polls come back empty, every `consumer_stall_check_s`
    this compares the partitions' end offsets with the group's committed offsets (the loop
    commits after every batch, so when idle they are the consumer's position). Lag seen at
    two checks in a row with no batch between them, or two checks that get no answer, is a
    stall. The partitions watched are the assigned ones, or every partition of the
    subscribed topics while none are assigned (a member stuck outside the group)."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: ServiceSettings) -> None:
        self.consumer = consumer
        self.interval = settings.consumer_stall_check_s
        self.timeout = max(1.0, settings.kafka_request_timeout_ms / 1000)
        self.next_check = time.monotonic() + self.interval
        self.lagging: dict[TopicPartition, int] = {}  # at the last check: partition → committed
        self.unanswered = 0

    def progressed(self) -> None:
        self.lagging.clear()
        self.unanswered = 0
        self.next_check = time.monotonic() + self.interval

    async def check(self) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.interval
        try:
            lagging = await asyncio.wait_for(self._lagging(), self.timeout)
        except (KafkaError, TimeoutError) as exc:
            self.unanswered += 1
            if self.unanswered >= 2:
                raise ConsumerStalled(f"offsets unanswered twice: {exc!r}") from exc
            return
        self.unanswered = 0
        stuck = {tp for tp, committed in lagging.items() if self.lagging.get(tp) == committed}
        self.lagging = lagging
        if stuck:
            raise ConsumerStalled(f"messages waiting but none polled on {sorted(map(str, stuck))}")

    async def _lagging(self) -> dict[TopicPartition, int]:
        """Partition → the group's committed offset, where it is not the partition's end."""
        partitions = set(self.consumer.assignment())
        if not partitions:
            for topic in self.consumer.subscription():
                ids = self.consumer.partitions_for_topic(topic) or set()
                partitions |= {TopicPartition(topic, p) for p in ids}
        if not partitions:
            return {}
        ends = await self.consumer.end_offsets(list(partitions))
        starts: dict[TopicPartition, int] | None = None
        lagging: dict[TopicPartition, int] = {}
        for tp, end in ends.items():
            committed = await self.consumer.committed(tp)
            if committed is None:  # nothing committed yet: reading starts at the log's start
                starts = starts or await self.consumer.beginning_offsets(list(partitions))
                committed = starts[tp]
            # Past the end too: a topic recreated behind the consumer's back.
            if end != committed:
                lagging[tp] = committed
        return lagging


class EventConsumer:
    """Runs the handlers of one service for the topics they are registered on."""

    def __init__(
        self,
        settings: ServiceSettings,
        engine: AsyncEngine,
        handlers: Mapping[str, EventHandler],
        metrics: Metrics,
        on_events_recorded: Callable[[], None] | None = None,
        after_batch: BatchHook | None = None,
        bulk_handlers: Mapping[str, BulkHandler] | None = None,
        *,
        concurrent_partitions: bool = False,
    ) -> None:
        self.settings = settings
        # Whether a poll's partitions are applied at once: one's Python work then runs
        # while the database works on another's transaction.
        self.concurrent_partitions = concurrent_partitions
        self.sessions = session_factory(engine)
        self.handlers = dict(handlers)
        self.bulk_handlers = dict(bulk_handlers or {})
        self.after_batch = after_batch
        self.metrics = metrics
        self.on_events_recorded = on_events_recorded
        self.consumer: AIOKafkaConsumer | None = None
        self._dlq_producer: AIOKafkaProducer | None = None
        self._dlq_starting = asyncio.Lock()
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
                reason = "stalled" if isinstance(exc, ConsumerStalled) else "failed"
                self.metrics.consumer_restarts(reason).inc()
                log.warning("consumer %s, restarting in %.1fs: %r", reason, backoff, exc)
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def stop(self) -> None:
        self._stopping = True
        await self._close()

    async def _start(self) -> AIOKafkaConsumer:
        topics = [self.settings.topic(event_type) for event_type in self.handlers]
        await ensure_platform_topics(self.settings)
        consumer = self.new_kafka_consumer(topics)
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 0.5)
            raise
        self.consumer = consumer
        return consumer

    def new_kafka_consumer(self, topics: list[str]) -> AIOKafkaConsumer:
        """The group member for these topics, not yet started."""
        options = client_options(self.settings)
        return AIOKafkaConsumer(
            *topics,
            **{
                **options,
                # A poll may wait out a session timeout (Tansu's JoinGroup, see
                # kafka-notes.md): a request must outlast it.
                "request_timeout_ms": max(
                    self.settings.kafka_request_timeout_ms,
                    self.settings.kafka_session_timeout_ms + 5000,
                ),
            },
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            # "latest" is unreliable on Tansu (kafka-notes.md); the inbox makes earliest safe.
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
        )

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
        watch = _StallWatch(consumer, self.settings)
        while not self._stopping:
            batches = await consumer.getmany(
                timeout_ms=500, max_records=self.settings.consumer_max_poll_records
            )
            if consumer.assignment():
                self.assigned.set()
            if self.concurrent_partitions and len(batches) > 1:
                # Partitions of one number hold the same customers (every topic has the
                # same partitions and the customer id is the key): those stay one at a time.
                alike: dict[int, list[TopicPartition]] = defaultdict(list)
                for partition in batches:
                    alike[partition.partition].append(partition)
                # A group, not gather: one failing cancels the others before the restart.
                async with asyncio.TaskGroup() as group:
                    for partitions in alike.values():
                        group.create_task(self._apply_partitions(consumer, partitions, batches))
            else:
                await self._apply_partitions(consumer, list(batches), batches)
            if batches:
                watch.progressed()
            else:
                await watch.check()

    async def _apply_partitions(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        batches: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        for partition in partitions:
            messages = batches[partition]
            await self.process_many(messages)
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

    async def process_many(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply one partition's messages exactly once each, in order: as one transaction
        while they succeed; a failing or unparsable one alone (retried, or dead-lettered)."""
        while messages:
            batch: list[_Parsed] = []
            for message in messages:
                try:
                    batch.append(self._parse(message))
                except PoisonMessage:
                    break
            try:
                if batch:
                    await self._apply_until_done(batch)
                rest = messages[len(batch) :]
                if not rest:
                    return
                await self.process(rest[0])  # unparsable: straight to the DLQ
                messages = rest[1:]
            except _BatchFailed as failed:
                if failed.index:
                    await self.process_many(messages[: failed.index])
                await self.process(messages[failed.index], failed_with=failed.error)
                messages = messages[failed.index + 1 :]

    async def _apply_until_done(self, batch: list[_Parsed]) -> None:
        """Apply a batch, waiting out database outages (they are not the messages' fault)."""
        outages = 0
        while True:
            try:
                outcomes = await self._apply(batch)
                break
            except _BatchFailed as failed:
                if not _is_transient(failed.error):
                    raise
                outages += 1
                await _wait_out_outage(outages, "a batch", failed.error)
            finally:
                correlation_id.set(None)
        counted = Counter(
            (parsed.event_type, outcome) for parsed, outcome in zip(batch, outcomes, strict=True)
        )
        for (event_type, outcome), count in counted.items():
            self.metrics.events_consumed(event_type, outcome).inc(count)

    async def process(
        self,
        message: ConsumerRecord[bytes, bytes],
        *,
        failed_with: BaseException | None = None,
    ) -> None:
        """Apply one message exactly once, or dead-letter it (`failed_with`: the error of
        its first attempt, made in a batch)."""
        topic = message.topic
        event_type = self._event_type(topic)
        attempts = 0 if failed_with is None else 1
        outages = 0
        error = failed_with
        while attempts < self.settings.consumer_max_attempts or not attempts:
            attempts += 1
            try:
                (outcome,) = await self._apply([self._parse(message)])
                self.metrics.events_consumed(event_type, outcome).inc()
                return
            except asyncio.CancelledError:
                raise
            except PoisonMessage as exc:
                error = exc
                break
            except _BatchFailed as failed:
                error = failed.error
                if _is_transient(error):
                    outages += 1
                    await _wait_out_outage(outages, topic, error)
                    attempts -= 1  # not the message's fault: does not count as an attempt
                    continue
                if attempts >= self.settings.consumer_max_attempts:
                    break
                log.warning("handler failed on %s (attempt %d): %r", topic, attempts, error)
                await asyncio.sleep(self.settings.consumer_retry_backoff_s * attempts)
            finally:
                correlation_id.set(None)
        await self._dead_letter(message, error, attempts)
        self.metrics.events_consumed(event_type, "dead_lettered").inc()

    def _parse(self, message: ConsumerRecord[bytes, bytes]) -> _Parsed:
        event_type = self._event_type(message.topic)
        try:
            envelope, data = parse_event(message.value or b"", event_type)
        except (ValidationError, ValueError) as exc:
            raise PoisonMessage(str(exc)) from exc
        return _Parsed(message, event_type, envelope, data)

    async def _apply(self, batch: list[_Parsed]) -> list[str]:
        """Apply a batch in one transaction; each event's outcome ("applied" or
        "duplicate"). Any failure rolls everything back and names the message at fault."""
        outcomes: list[str] = []
        applied: list[EventEnvelope] = []
        index = 0
        try:
            async with self.sessions() as session:
                async with session.begin():
                    fresh = await self._record_in_inbox(session, batch)
                    outcomes = ["applied" if new else "duplicate" for new in fresh]
                    new = [parsed for parsed, is_new in zip(batch, fresh, strict=True) if is_new]
                    types = {parsed.event_type for parsed in new}
                    bulk = self.bulk_handlers.get(types.pop()) if len(types) == 1 else None
                    if bulk is not None:
                        index = 0  # a failure is retried message by message
                        await bulk(session, [(parsed.envelope, parsed.data) for parsed in new])
                        applied = [parsed.envelope for parsed in new]
                    else:
                        for index, parsed in enumerate(batch):
                            if not fresh[index]:
                                continue
                            envelope = parsed.envelope
                            correlation_id.set(envelope.correlation_id)
                            await self.handlers[parsed.event_type](session, envelope, parsed.data)
                            applied.append(envelope)
                    if applied and self.after_batch is not None:
                        # Its failure is pinned on the first message: retried alone, each
                        # message then meets the hook by itself.
                        index = 0
                        await self.after_batch(session, applied)
                if session.info.pop(PENDING_FLAG, False) and self.on_events_recorded:
                    self.on_events_recorded()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _BatchFailed(index, exc) from exc
        if log.isEnabledFor(logging.DEBUG):
            for envelope in applied:  # after the commit, each with its correlation id
                correlation_id.set(envelope.correlation_id)
                log.debug("handled %s", envelope.type, extra={"event_id": str(envelope.id)})
        return outcomes

    @staticmethod
    async def _record_in_inbox(session: AsyncSession, batch: list[_Parsed]) -> list[bool]:
        """One INSERT for the batch's event ids; per message, whether it is new (not in the
        inbox before, nor earlier in this batch)."""
        types = {parsed.envelope.id: parsed.event_type for parsed in batch}  # each id once
        columns: dict[str, list[Any]] = {
            "event_id": list(types),
            "event_type": list(types.values()),
            "handled_at": [utcnow()] * len(types),
        }
        inserted = await insert_new_columns(session, inbox, columns, "event_id")
        if len(inserted) == len(batch):  # every one new, none repeated within the batch
            return [True] * len(batch)
        fresh: list[bool] = []
        for parsed in batch:
            is_new = parsed.envelope.id in inserted
            inserted.discard(parsed.envelope.id)  # a repeat within the batch is a duplicate
            if not is_new:
                log.debug("duplicate event %s dropped", parsed.envelope.id)
            fresh.append(is_new)
        return fresh

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], error: BaseException | None, attempts: int
    ) -> None:
        async with self._dlq_starting:  # partitions applied at once may both get here
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
