"""How fast each service takes in an import's customer events: `customer.created`
already on the embedded broker, one consumer, a poll applied at once (the services'
bulk handlers) beside the same events applied one by one (the per-event handlers: the
baseline, same run).

    python -m bench.customer_events [--customers 10000] [--backend postgresql]

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


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


async def _send(bootstrap: str, topic: str, customers: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = []
        for n in range(customers):
            customer = uuid.uuid4()
            envelope = {
                "id": str(uuid.uuid4()),
                "type": "customer.created",
                "version": 1,
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "producer": "profile",
                "customer_id": str(customer),
                "data": {
                    "revision": 1,
                    "name": f"Customer {n}",
                    "kind": "company",
                    "timezone": "Asia/Shanghai",
                    "account_manager": "mia",
                },
            }
            sent.append(
                await producer.send(
                    topic, json.dumps(envelope).encode(), key=str(customer).encode()
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def rate(service: str, customers: int, backend: str, at_once: bool) -> float:
    """Events applied per second, from the first one applied."""
    consumers = importlib.import_module(f"services.{service}.consumers")
    broker = EmbeddedBroker()
    broker.start()
    url = await new_database(backend, f"customers_{service}", ROOT / ".crm")
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
        await _send(broker.bootstrap, settings.topic("customer.created"), customers)
        engine = create_engine(url)
        consumer = EventConsumer(
            settings,
            engine,
            consumers.HANDLERS,
            Metrics("bench"),
            bulk_handlers=consumers.BULK_HANDLERS if at_once else None,
        )
        task = asyncio.create_task(consumer.run())
        elapsed = await until_handled(consumer.metrics, customers)
        await consumer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
        return customers / elapsed
    finally:
        broker.stop()
        await drop_database(url)


async def bench(customers: int, backend: str) -> None:
    rows = []
    for service in SERVICES:
        one_by_one = await rate(service, customers, backend, at_once=False)
        at_once = await rate(service, customers, backend, at_once=True)
        rows.append(
            f"| {service} | {at_once:,.0f} | {one_by_one:,.0f} | {at_once / one_by_one:.1f}x |"
        )
    append_results(
        f"## Customer events per service ({dt.date.today()}, {backend})\n\n"
        f"Machine: {machine()}. `python -m bench.customer_events --customers {customers} "
        f"--backend {backend}`: {customers:,} `customer.created` (as an import sends them) "
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
    args = parser.parse_args()
    asyncio.run(bench(args.customers, args.backend))


if __name__ == "__main__":
    main()
