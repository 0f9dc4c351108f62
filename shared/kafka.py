"""Kafka clients configured from settings, topic creation, and a reachability check.

Idempotent and transactional producers are off on purpose: the embedded Tansu broker
rejects them (kafka-notes.md); exactly-once effect comes from the outbox and the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events import all_topics
from shared.settings import ServiceSettings

log = logging.getLogger("crm.kafka")


def new_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        client_id=f"crm-{settings.service_name}",
    )


async def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, *, timeout_s: float = 10.0
) -> None:
    """Create the topics that do not exist yet, each with its final partition count.

    Tansu cannot add partitions later, so the count is fixed at creation.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if not missing:
            return
        # Another process may create them between our look and our create: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(name, num_partitions=partitions, replication_factor=1)
                    for name in missing
                ]
            )
        log.info("created %d topics", len(missing))
    finally:
        await admin.close()


async def ensure_platform_topics(settings: ServiceSettings) -> None:
    """Every catalog topic and its `.dlq`, under the configured prefix."""
    await ensure_topics(
        settings.kafka_bootstrap, all_topics(settings.kafka_topic_prefix), settings.kafka_partitions
    )


async def broker_reachable(producer: AIOKafkaProducer | None, timeout_s: float = 2.0) -> bool:
    """True when the producer's client can fetch cluster metadata within the timeout."""
    if producer is None:
        return False
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)
    except Exception:
        return False
    return True
