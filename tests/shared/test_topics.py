"""Topics as infrastructure: `crm topics apply` creates every declared topic with its
partitions and configs and reports what differs; on Apache Kafka a service only checks
(a missing topic is named); the Strimzi manifest in deploy/k8s is the declaration's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.events import all_topics
from shared.topics import (
    TopicsMissing,
    apply_topics,
    declared_topics,
    ensure_platform_topics,
    strimzi_manifest,
)
from tests.conftest import API_KEYS

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "topics.yaml"


def settings_for(broker: EmbeddedBroker, prefix: str, **values: Any) -> TieringSettings:
    return TieringSettings(
        api_keys=API_KEYS,
        database_url="sqlite+aiosqlite:///unused.db",
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=prefix,
        kafka_partitions=3,
        **values,
    )


async def test_apply_creates_the_declaration_and_reports_what_differs(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    settings = settings_for(broker, topic_prefix)
    # One topic made by hand beforehand, with other partitions and retention.
    odd = f"{topic_prefix}purchase.recorded"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    odd,
                    num_partitions=2,
                    replication_factor=1,
                    topic_configs={"retention.ms": "3600000"},
                )
            ]
        )
    finally:
        await admin.close()
    created, differences = await apply_topics(settings)
    declared = {spec.name for spec in declared_topics(settings)}
    assert declared == set(all_topics(topic_prefix)) and set(created) == declared - {odd}
    assert {(d.topic, d.what, d.declared, d.found) for d in differences} == {
        (odd, "partitions", "3", "2"),
        (odd, "retention.ms", "604800000", "3600000"),
    }
    # Applied again: nothing to create; the difference stays reported, nothing is changed.
    created, differences = await apply_topics(settings)
    assert created == [] and len(differences) == 2
    dlq = next(spec for spec in declared_topics(settings) if spec.name.endswith(".dlq"))
    assert dlq.config["retention.ms"] == str(720 * 3_600_000)


async def test_on_kafka_a_service_only_checks_and_names_a_missing_topic(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    on_kafka = settings_for(broker, topic_prefix, kafka_broker="kafka")
    with pytest.raises(TopicsMissing, match=rf"{topic_prefix}customer.created.*crm topics apply"):
        await ensure_platform_topics(on_kafka)
    missing, _ = await apply_topics(on_kafka, create=False)
    assert len(missing) == len(all_topics())  # it created nothing
    await apply_topics(settings_for(broker, topic_prefix))  # the operator's step
    await ensure_platform_topics(on_kafka)


def test_the_strimzi_manifest_in_deploy_is_the_declaration() -> None:
    production = TieringSettings(
        api_keys=API_KEYS,
        database_url="sqlite+aiosqlite:///unused.db",
        kafka_bootstrap="kafka:9092",
    )
    assert production.kafka_replication_factor == 3
    assert MANIFEST.read_text() == strimzi_manifest(production, "crm", "kafka"), (
        "deploy/k8s/base/topics.yaml is stale: run `make manifests`"
    )
