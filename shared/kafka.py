"""Kafka clients configured from settings (topics: shared/topics.py).

Every client (producer, consumer, admin, probe) takes its connection from
`client_options`: bootstrap, security protocol, SASL and TLS. On Apache Kafka the
producer is idempotent (`acks=all`); on the embedded Tansu broker it is not, as Tansu
rejects it (kafka-notes.md). Exactly-once effect comes from the outbox and the inbox
either way.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from shared.settings import ServiceSettings


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
