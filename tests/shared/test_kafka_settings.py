"""Kafka client settings reach aiokafka: security protocol, SASL, TLS, the idempotent
producer on Apache Kafka, and timeouts by broker kind (the embedded path is the rest of
the suite)."""

from __future__ import annotations

from typing import Any

import certifi
import pytest
from pydantic import ValidationError

from services.tiering.consumers import HANDLERS
from services.tiering.settings import TieringSettings
from shared.consumer import EventConsumer
from shared.db import create_engine
from shared.kafka import new_producer
from shared.observability import Metrics
from tests.conftest import API_KEYS

SECURED: dict[str, Any] = {
    "kafka_bootstrap": "kafka-0.kafka.svc:9093,kafka-1.kafka.svc:9093",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "tiering",
    "kafka_sasl_password": "s3cret-from-a-secret",
    "kafka_ssl_cafile": certifi.where(),
}


def settings(**values: Any) -> TieringSettings:
    return TieringSettings(
        api_keys=API_KEYS, database_url="sqlite+aiosqlite:///unused.db", **values
    )


async def test_a_secured_apache_kafka_gets_sasl_tls_and_an_idempotent_producer() -> None:
    secured = settings(**SECURED)
    assert secured.kafka_broker == "kafka"
    producer = new_producer(secured)
    try:
        client = producer.client
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "tiering"
        assert client._sasl_plain_password == "s3cret-from-a-secret"
        assert client._ssl_context is not None
        assert producer._txn_manager is not None  # idempotent
    finally:
        await producer.stop()
    engine = create_engine(secured.database_url)
    consumer = EventConsumer(secured, engine, HANDLERS, Metrics("test")).new_kafka_consumer(
        ["purchase.recorded"]
    )
    try:
        assert consumer._session_timeout_ms == 45000  # Kafka's default, not Tansu's 6 s
        assert consumer._client._security_protocol == "SASL_SSL"
        assert consumer._client._ssl_context is not None
    finally:
        await consumer.stop()
        await engine.dispose()


async def test_the_embedded_broker_keeps_its_own_settings() -> None:
    local = settings(kafka_bootstrap="127.0.0.1:9092")
    assert local.kafka_broker == "embedded"
    assert local.kafka_session_timeout_ms == 6000
    producer = new_producer(local)
    try:
        assert producer._txn_manager is None  # Tansu rejects idempotent producers
        assert producer.client._security_protocol == "PLAINTEXT"
    finally:
        await producer.stop()
    # A setting given wins over the broker kind's default.
    assert settings(kafka_bootstrap="kafka:9092", kafka_session_timeout_ms=10000)
    assert settings(kafka_bootstrap="kafka:9092").kafka_session_timeout_ms == 45000


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({**SECURED, "kafka_sasl_password": None}, "CRM_KAFKA_SASL_PASSWORD"),
        ({**SECURED, "kafka_sasl_mechanism": None}, "CRM_KAFKA_SASL_MECHANISM"),
        ({**SECURED, "kafka_ssl_cafile": "/nowhere/ca.pem"}, "CRM_KAFKA_SSL_CAFILE"),
        ({**SECURED, "kafka_ssl_certfile": certifi.where()}, "CRM_KAFKA_SSL_KEYFILE"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_an_incomplete_security_setting_is_refused_by_name(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        settings(**values)
