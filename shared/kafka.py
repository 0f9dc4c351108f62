"""Kafka clients configured from settings, topic creation, and a reachability check.

Every client (producer, consumer, admin, probe) takes its connection from
`client_options`: bootstrap, security protocol, SASL and TLS. On Apache Kafka the
producer is idempotent (`acks=all`); on the embedded Tansu broker it is not, as Tansu
rejects it (kafka-notes.md). Exactly-once effect comes from the outbox and the inbox
either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from shared.events import all_topics
from shared.settings import ServiceSettings

log = logging.getLogger("crm.kafka")


def client_options(settings: ServiceSettings, role: str = "") -> dict[str, Any]:
    """What every aiokafka client is given to reach the cluster (`role` names the client
    in the broker's logs: crm-<service>[-role])."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": f"crm-{settings.service_name}" + (f"-{role}" if role else ""),
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        key_password = settings.kafka_ssl_key_password
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password=key_password.get_secret_value() if key_password else None,
        )
    return options


def new_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_broker == "kafka",
        linger_ms=2,
    )


async def ensure_topics(
    settings: ServiceSettings, topics: list[str], partitions: int, *, timeout_s: float = 10.0
) -> None:
    """Create the topics that do not exist yet, each with its final partition count.

    Tansu cannot add partitions later, so the count is fixed at creation.
    """
    admin = AIOKafkaAdminClient(**{**client_options(settings, "admin"), "request_timeout_ms": 5000})
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
        settings, all_topics(settings.kafka_topic_prefix), settings.kafka_partitions
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
