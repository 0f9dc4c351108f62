"""Dead letters: read what the consumers gave up on (`<topic>.dlq`) and send it back.

A replay publishes the dead letter's message, unchanged, to the topic it came from, with
`x-replayed-from` naming where it lay. Every consumer group reads it again; those that
had applied it find its id in their inbox and drop it, so replaying twice, or replaying
an event one group had handled, still applies it once per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import CATALOG, dlq_topic
from shared.kafka import client_options, new_producer
from shared.settings import ServiceSettings

# Reading stops once the topics have been quiet this long: Tansu's end offsets can fall
# short of the true end (kafka-notes.md), so the end is not asked for.
QUIET_S = 1.5


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter topic, with what the consumer said about it."""

    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def original_topic(self) -> str:
        return self.headers.get("x-original-topic") or self.dlq_topic.removesuffix(".dlq")

    @property
    def envelope(self) -> dict[str, object] | None:
        """The event's envelope, or None when the message is not one (unparsable)."""
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    @property
    def event_id(self) -> str | None:
        envelope = self.envelope
        value = envelope.get("id") if envelope else None
        return str(value) if value is not None else None

    @property
    def event_type(self) -> str | None:
        envelope = self.envelope
        value = envelope.get("type") if envelope else None
        return str(value) if value is not None else None

    @property
    def where(self) -> str:
        return f"{self.dlq_topic}:{self.partition}:{self.offset}"


def dead_letter_topics(settings: ServiceSettings) -> list[str]:
    """Every dead-letter topic of the catalog, under the configured prefix."""
    return [dlq_topic(settings.topic(event_type)) for event_type in CATALOG]


async def read_dead_letters(
    settings: ServiceSettings, topics: list[str] | None = None, *, timeout_s: float = 30.0
) -> list[DeadLetter]:
    """Every message in the dead-letter topics (all of them by default), oldest first per
    partition. Reads without a consumer group: nothing is committed, nothing moves."""
    topics = topics or dead_letter_topics(settings)
    consumer = AIOKafkaConsumer(
        **client_options(settings, "dlq"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await asyncio.wait_for(consumer.start(), timeout_s)
    letters: list[DeadLetter] = []
    try:
        existing = await consumer.topics()  # fetches the metadata the partitions come from
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            if topic in existing
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        quiet_since = loop.time()
        while loop.time() < deadline and loop.time() - quiet_since < QUIET_S:
            batches = await consumer.getmany(timeout_ms=300)
            if any(batches.values()):
                quiet_since = loop.time()
            for messages in batches.values():
                letters.extend(
                    DeadLetter(
                        dlq_topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        key=message.key,
                        value=message.value or b"",
                        headers={
                            name: value.decode(errors="replace") for name, value in message.headers
                        },
                    )
                    for message in messages
                )
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return sorted(letters, key=lambda letter: (letter.dlq_topic, letter.partition, letter.offset))


def replayable(letter: DeadLetter) -> bool:
    """Whether a replay could succeed: an envelope with an id and a known type (a message
    that is not an event would only be dead-lettered again)."""
    if letter.event_id is None or letter.event_type not in CATALOG:
        return False
    with contextlib.suppress(ValueError):
        uuid.UUID(letter.event_id)
        return True
    return False


async def replay(settings: ServiceSettings, letters: list[DeadLetter]) -> int:
    """Publish each dead letter to its original topic, key and value unchanged, in the
    order given, an event that several consumer groups dead-lettered once; return how
    many Kafka acknowledged."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for letter in letters:
        identity = (letter.original_topic, letter.event_id or letter.where)
        if identity not in seen:
            seen.add(identity)
            unique.append(letter)
    letters = unique
    if not letters:
        return 0
    producer = new_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(
                letter.original_topic,
                value=letter.value,
                key=letter.key,
                headers=[("x-replayed-from", letter.where.encode())],
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(letters)
