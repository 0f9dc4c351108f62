"""How fast each service takes in a burst of events about many customers: an import's
`customer.created`, a first ranking's `tier.changed`, an import's `purchase.recorded`;
already on the embedded broker, one consumer, a poll applied at once (the services'
bulk handlers) beside the same events applied one by one (the per-event handlers: the
baseline, same run). For the last two the customers are known first (not measured).

    python -m bench.customer_events [--customers 10000] [--backend postgresql]
                                    [--event customer.created]

Appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import (
    ROOT,
    append_results,
    drop_database,
    machine,
    new_database,
    until_handled,
)
from bench.tiering import KEYS
from shared.broker import EmbeddedBroker
from shared.consumer import EventConsumer
from shared.db import create_engine, migrate
from shared.observability import Metrics
from shared.topics import ensure_platform_topics

SERVICES = {  # service -> its settings class
    "tiering": "services.tiering.settings:TieringSettings",
    "complaints": "services.complaints.settings:ComplaintsSettings",
    "outreach": "services.outreach.settings:OutreachSettings",
}

CONSUMED_BY = {  # event type -> the services the benchmark measures it in
    "customer.created": ("tiering", "complaints", "outreach"),
    "tier.changed": ("complaints", "outreach"),
    "purchase.recorded": ("complaints", "outreach"),
}

POLICY = uuid.uuid4()


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _data(event_type: str, n: int) -> dict[str, Any]:
    """The data of the `n`th event of a burst of `event_type`."""
    now = dt.datetime.now(dt.UTC)
    if event_type == "customer.created":
        return {
            "revision": 1,
            "name": f"Customer {n}",
            "kind": "company",
            "timezone": "Asia/Shanghai",
            "account_manager": "mia",
        }
    if event_type == "tier.changed":  # a first ranking: a fifth in the top tier
        return {
            "previous_tier": None,
            "tier": "ABCCC"[n % 5],
            "policy_id": str(POLICY),
            "policy_version": 1,
            "changed_at": now.isoformat(),
        }
    return {
        "purchase_id": str(uuid.uuid4()),
        "amount": "120.00",
        "currency": "CNY",
        "quantity": "1",
        "category": "tea",
        "purchased_at": (now - dt.timedelta(days=n % 300)).isoformat(),
    }


async def _send(bootstrap: str, topic: str, event_type: str, customers: list[uuid.UUID]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = []
        for n, customer in enumerate(customers):
            envelope = {
                "id": str(uuid.uuid4()),
                "type": event_type,
                "version": 1,
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "producer": event_type.split(".")[0],
                "customer_id": str(customer),
                "data": _data(event_type, n),
            }
            sent.append(
                await producer.send(
                    topic, json.dumps(envelope).encode(), key=str(customer).encode()
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _apply(settings: Any, engine: Any, consumers: Any, events: int, at_once: bool) -> float:
    """Run a consumer until it has applied `events` more events: the seconds it took
    from the first one applied."""
    consumer = EventConsumer(
        settings,
        engine,
        consumers.HANDLERS,
        Metrics("bench"),
        bulk_handlers=consumers.BULK_HANDLERS if at_once else None,
    )
    task = asyncio.create_task(consumer.run())
    elapsed = await until_handled(consumer.metrics, events)
    await consumer.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def rate(service: str, customers: int, backend: str, at_once: bool, event_type: str) -> float:
    """Events applied per second, from the first one applied."""
    consumers = importlib.import_module(f"services.{service}.consumers")
    broker = EmbeddedBroker()
    broker.start()
    url = await new_database(backend, f"events_{service}", ROOT / ".crm")
    try:
        await migrate(url, ROOT / "services" / service / "migrations")
        prefix = f"b{uuid.uuid4().hex[:8]}."
        settings = _load(SERVICES[service])(
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            kafka_topic_prefix=prefix,
            api_keys=KEYS,
            consumer_group=f"bench-{prefix}",
        )
        await ensure_platform_topics(settings)
        ids = [uuid.uuid4() for _ in range(customers)]
        engine = create_engine(url)
        if event_type != "customer.created":  # the customers are known first
            await _send(
                broker.bootstrap, settings.topic("customer.created"), "customer.created", ids
            )
            await _apply(settings, engine, consumers, customers, at_once=True)
        await _send(broker.bootstrap, settings.topic(event_type), event_type, ids)
        elapsed = await _apply(settings, engine, consumers, customers, at_once)
        await engine.dispose()
        return customers / elapsed
    finally:
        broker.stop()
        await drop_database(url)


async def bench(customers: int, backend: str, event_type: str) -> None:
    rows = []
    for service in CONSUMED_BY[event_type]:
        one_by_one = await rate(service, customers, backend, False, event_type)
        at_once = await rate(service, customers, backend, True, event_type)
        rows.append(
            f"| {service} | {at_once:,.0f} | {one_by_one:,.0f} | {at_once / one_by_one:.1f}x |"
        )
    what = {
        "customer.created": "as an import sends them",
        "tier.changed": "as a first ranking sends them: no previous tier, a fifth to the top tier",
        "purchase.recorded": "one per customer, as an import sends them",
    }[event_type]
    append_results(
        f"## `{event_type}` per service ({dt.date.today()}, {backend})\n\n"
        f"Machine: {machine()}. `python -m bench.customer_events --customers {customers} "
        f"--backend {backend} --event {event_type}`: {customers:,} `{event_type}` ({what}) "
        "already on the embedded broker, one consumer per service; a poll applied at once "
        "(the services' bulk handlers) beside the same events applied one by one (the "
        "per-event handlers), same run. Rate counted from the first applied event.\n\n"
        "| service | a poll at once, events/s | one by one (baseline), events/s | ratio |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--backend", default="postgresql")
    parser.add_argument("--event", choices=sorted(CONSUMED_BY), default="customer.created")
    args = parser.parse_args()
    asyncio.run(bench(args.customers, args.backend, args.event))


if __name__ == "__main__":
    main()
