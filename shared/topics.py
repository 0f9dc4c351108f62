"""Topics as infrastructure: one declaration of every topic and its `.dlq` (partitions,
replication factor, retention, `min.insync.replicas` from settings), applied by
`crm topics apply`, rendered as Strimzi `KafkaTopic` resources by `crm topics manifest`,
and checked by every service at start.

On Apache Kafka a service only checks that its topics exist (it needs no create rights;
a missing topic is an error naming it and the command that makes it). On the embedded
broker, which `crm up` and the tests start empty, the service applies the declaration
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from shared.events import all_topics
from shared.kafka import client_options
from shared.settings import ServiceSettings

HOUR_MS = 3_600_000


class TopicsMissing(RuntimeError):
    """Topics the services need are not on the cluster."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicDifference:
    topic: str
    what: str
    declared: str
    found: str


def declared_topics(settings: ServiceSettings) -> list[TopicSpec]:
    """Every catalog topic and its dead-letter topic, under the configured prefix."""
    specs = []
    for name in all_topics(settings.kafka_topic_prefix):
        hours = (
            settings.kafka_dlq_retention_hours
            if name.endswith(".dlq")
            else settings.kafka_retention_hours
        )
        specs.append(
            TopicSpec(
                name=name,
                partitions=settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
                config={
                    "retention.ms": str(int(hours * HOUR_MS)),
                    "min.insync.replicas": str(settings.kafka_min_insync_replicas),
                },
            )
        )
    return specs


async def apply_topics(
    settings: ServiceSettings, *, create: bool = True, timeout_s: float = 10.0
) -> tuple[list[str], list[TopicDifference]]:
    """Create the declared topics that are missing (with `create`), and compare the
    others with the declaration: (created or, without `create`, missing; differences).
    Nothing existing is changed: partitions, replication and configs are reported."""
    specs = declared_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings, "admin"))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and create:
            # Another process may create them between our look and our create: fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=spec.replication_factor,
                            topic_configs=spec.config,
                        )
                        for spec in missing
                    ]
                )
        present = [spec for spec in specs if spec.name in existing]
        return [spec.name for spec in missing], await _differences(admin, present)
    finally:
        await admin.close()


async def _differences(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[TopicDifference]:
    if not specs:
        return []
    found: list[TopicDifference] = []
    described = {
        topic["topic"]: topic for topic in await admin.describe_topics([s.name for s in specs])
    }
    configs = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name) for spec in specs]
    )
    values: dict[str, dict[str, str]] = {}
    for response in configs:
        for resource in response.resources:
            _, _, _, name, entries = resource[:5]
            values[name] = {entry[0]: entry[1] for entry in entries}
    for spec in specs:
        topic = described.get(spec.name, {})
        partitions = topic.get("partitions", [])
        if len(partitions) != spec.partitions:
            found.append(
                TopicDifference(spec.name, "partitions", str(spec.partitions), str(len(partitions)))
            )
        replicas = min((len(p["replicas"]) for p in partitions), default=0)
        if partitions and replicas != spec.replication_factor:
            found.append(
                TopicDifference(
                    spec.name, "replication factor", str(spec.replication_factor), str(replicas)
                )
            )
        for key, value in spec.config.items():
            have = values.get(spec.name, {}).get(key)
            if have is not None and have != value:
                found.append(TopicDifference(spec.name, key, value, have))
    return found


async def ensure_platform_topics(settings: ServiceSettings) -> None:
    """At a service's start: on the embedded broker apply the declaration; on Kafka only
    check that every declared topic exists."""
    if settings.kafka_broker == "embedded":
        await apply_topics(settings)
        return
    missing, _ = await apply_topics(settings, create=False)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise TopicsMissing(
            f"{len(missing)} topic(s) missing on {settings.kafka_bootstrap}: {shown}; "
            "run `crm topics apply` (or apply deploy/k8s/base/topics.yaml)"
        )


def strimzi_manifest(settings: ServiceSettings, cluster: str, namespace: str) -> str:
    """The declaration as Strimzi `KafkaTopic` resources (one YAML document each)."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {
                "name": spec.name.replace(".", "-").replace("_", "-"),
                "namespace": namespace,
                "labels": {"strimzi.io/cluster": cluster},
            },
            "spec": {
                "topicName": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
                "config": dict(spec.config),
            },
        }
        for spec in declared_topics(settings)
    ]
    header = "# Generated by `crm topics manifest` from shared/topics.py: do not edit by hand.\n"
    return header + str(yaml.safe_dump_all(documents, sort_keys=False))
