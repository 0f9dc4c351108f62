"""Tiering benchmarks: full re-rank, per-event consumer rate, churn back-test.

    python -m bench.tiering rerank  [--customers 1000000 --purchases 10000000]
    python -m bench.tiering events  [--events 5000]
    python -m bench.tiering churn   [--customers 20000]

Each appends a section to bench/RESULTS.md with the machine and the date. The re-rank
seeds the daily aggregates directly (as the consumer would have built them) on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import json
import random
import resource
import statistics
import time
import uuid
from typing import Any

import asyncpg
import numpy as np

from bench.common import (
    ROOT,
    append_results,
    database_name,
    drop_database,
    machine,
    new_database,
)
from services.tiering.consumers import HANDLERS, reassess_customers
from services.tiering.feed import TierChangeFeed
from services.tiering.models import epoch_day
from services.tiering.ranking import rank
from services.tiering.schemas import DEFAULT_POLICY
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.broker import EmbeddedBroker
from shared.consumer import EventConsumer
from shared.db import create_engine, migrate, session_factory
from shared.events import EventData, EventEnvelope
from shared.kafka import ensure_platform_topics
from shared.observability import Metrics
from shared.outbox import OutboxRelay

MIGRATIONS = ROOT / "services" / "tiering" / "migrations"
KEYS = {"bench-admin-key-0123456789abcdef": {"roles": ["admin"], "user": "bench"}}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- re-rank
async def copy_customers(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
    """One aggregate row per customer, keyed 1..n, as the consumer creates them."""
    seen = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    await conn.copy_records_to_table(
        "customer_aggregates",
        columns=[
            "customer_id",
            "key",
            "known",
            "erased",
            "revenue",
            "quantity",
            "collected",
            "purchase_count",
            "first_seen_at",
            "updated_at",
        ],
        records=((cid, n + 1, True, False, 0, 0, 0, 0, seen, seen) for n, cid in enumerate(ids)),
    )


def _chunked_rows(*columns: Any, size: int = 200_000) -> Any:
    """Rows from numpy columns, a chunk at a time (never a list of all of them)."""
    for start in range(0, len(columns[0]), size):
        yield from zip(*[column[start : start + size].tolist() for column in columns], strict=True)


async def seed(name: str, customers: int, purchases: int, today: int) -> None:
    """Aggregates as the consumer builds them: one row per customer, one per active day."""
    rng = np.random.default_rng(7)
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
    raw_ids = rng.bytes(16 * customers)
    ids = [uuid.UUID(bytes=raw_ids[16 * n : 16 * n + 16], version=4) for n in range(customers)]
    await copy_customers(conn, ids)
    await conn.execute("SELECT setval('customer_key_seq', $1)", customers)
    # Purchases per customer follow a heavy tail (a few buy a lot): Pareto weights.
    weights = rng.pareto(1.2, customers) + 1
    counts = np.rint(purchases * weights / weights.sum()).astype(np.int64)
    owner = np.repeat(np.arange(customers, dtype=np.int64), counts)
    ago = rng.integers(0, 730, owner.size)
    cells, inverse = np.unique(owner * 1000 + ago, return_inverse=True)
    revenue = np.bincount(inverse, weights=rng.integers(100, 100_000, owner.size))  # fen
    quantity = np.bincount(inverse, weights=1000 * rng.integers(1, 10, owner.size))
    bought = np.bincount(inverse)
    await conn.copy_records_to_table(
        "daily_activity",
        columns=["customer_key", "day", "revenue", "quantity", "purchases", "collected"],
        records=_chunked_rows(
            cells // 1000 + 1,
            today - cells % 1000,
            revenue.astype(np.int64),
            quantity.astype(np.int64),
            bought,
            (revenue * 9 // 10).astype(np.int64),
        ),
    )
    await conn.execute("ANALYZE")
    await conn.close()


def seed_elsewhere(name: str, customers: int, purchases: int, today: int) -> None:
    """Seed in a child process, so the peak memory measured is the re-rank's own."""
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        pool.submit(_seed_sync, name, customers, purchases, today).result()


def _seed_sync(name: str, customers: int, purchases: int, today: int) -> None:
    asyncio.run(seed(name, customers, purchases, today))


async def bench_rerank(customers: int, purchases: int) -> None:
    url = await new_database("postgresql", "rerank", ROOT)
    name = database_name(url)
    try:
        await migrate(url, MIGRATIONS)
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        seed_elsewhere(name, customers, purchases, epoch_day(now))
        seeded = time.perf_counter() - started
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await tiering_service.ensure_default_policy(session)
        timings = []
        changed = []
        for moment in (now, now, now, now + dt.timedelta(days=1)):
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                outcome = await tiering_service.recompute(session, moment)
            timings.append(time.perf_counter() - started)
            changed.append(outcome.changed)
        # Ranking alone (no writes): what simulate costs.
        started = time.perf_counter()
        async with sessions() as session:
            await rank(session, DEFAULT_POLICY, now)
        ranking_only = time.perf_counter() - started
        announced, announcing = await announce_everything(url, engine)
        await engine.dispose()
        conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
        daily_rows = await conn.fetchval("SELECT count(*) FROM daily_activity")
        await conn.close()
    finally:
        await drop_database(url)
    append_results(
        f"## Tiering re-rank ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `python -m bench.tiering rerank --customers {customers} "
        f"--purchases {purchases}`: {customers} customers, {purchases} purchases over two years "
        f"(heavy-tailed), held as {daily_rows} daily aggregate rows (seeding took "
        f"{seeded:.0f} s). Default policy: share bands on 365-day revenue plus RFM, "
        "thermometer and churn, computed over numpy columns read by binary COPY.\n\n"
        "| run | seconds | tiers changed |\n|---|---|---|\n"
        "| first (everyone gets a tier: a history row each, which is its event) "
        f"| {timings[0]:.1f} | {changed[0]} |\n"
        f"| second (nothing changed) | {timings[1]:.1f} | {changed[1]} |\n"
        f"| third (nothing changed) | {timings[2]:.1f} | {changed[2]} |\n"
        f"| a day later (every score moves with the date) | {timings[3]:.1f} "
        f"| {changed[3]} |\n"
        f"| ranking alone (as simulate) | {ranking_only:.1f} | - |\n\n"
        f"Announcing them: the relay published the {announced} `tier.changed` events made "
        f"from those history rows to the embedded broker in {announcing:.0f} s "
        f"({announced / announcing:,.0f} events/s), after the re-ranks had committed.\n\n"
        f"Peak RSS of the process: {peak_rss_mib():.0f} MiB.\n"
    )


async def announce_everything(url: str, engine: Any) -> tuple[int, float]:
    """Run the relay over the tier.changed feed until it is drained: (events, seconds)."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        settings = TieringSettings(
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            kafka_topic_prefix=f"b{uuid.uuid4().hex[:8]}.",
            api_keys=KEYS,
        )
        await ensure_platform_topics(settings)
        relay = OutboxRelay(settings, engine, Metrics("bench"), [TierChangeFeed()])
        sent = 0
        started = time.perf_counter()
        try:
            while batch := await relay.publish_batch():
                sent += batch
        finally:
            await relay.stop()
        return sent, time.perf_counter() - started
    finally:
        broker.stop()


# ---------------------------------------------------------------- per-event rate
async def bench_events(events: int) -> None:
    broker = EmbeddedBroker()
    broker.start()
    urls: list[str] = []
    try:
        results = {}
        for label, handlers in (("baseline: inbox only", None), ("tiering handlers", HANDLERS)):
            url = await new_database("postgresql", "events", ROOT)
            name = database_name(url)
            urls.append(url)
            await migrate(url, MIGRATIONS)
            prefix = f"b{uuid.uuid4().hex[:8]}."
            settings = TieringSettings(
                database_url=url,
                kafka_bootstrap=broker.bootstrap,
                kafka_topic_prefix=prefix,
                api_keys=KEYS,
                consumer_group=f"bench-{prefix}",
                kafka_partitions=2,
            )
            engine = create_engine(url)
            sessions = session_factory(engine)
            async with sessions() as session, session.begin():
                await tiering_service.ensure_default_policy(session)
            await ensure_platform_topics(settings)

            async def nothing(session: Any, event: EventEnvelope, data: EventData) -> None:
                return None

            chosen = handlers or {"purchase.recorded": nothing}
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            customers = [uuid.uuid4() for _ in range(500)]
            futures = []
            for n in range(events):
                customer = customers[n % len(customers)]
                envelope = {
                    "id": str(uuid.uuid4()),
                    "type": "purchase.recorded",
                    "version": 1,
                    "occurred_at": "2026-11-01T00:00:00Z",
                    "producer": "profile",
                    "customer_id": str(customer),
                    "data": {
                        "purchase_id": str(uuid.uuid4()),
                        "amount": "10.00",
                        "currency": "CNY",
                        "quantity": "1",
                        "purchased_at": "2026-11-01T00:00:00Z",
                    },
                }
                futures.append(
                    await producer.send(
                        settings.topic("purchase.recorded"),
                        json.dumps(envelope).encode(),
                        key=str(customer).encode(),
                    )
                )
            await asyncio.gather(*futures)
            await producer.stop()
            consumer = EventConsumer(
                settings,
                engine,
                chosen,
                Metrics("bench"),
                after_batch=reassess_customers if handlers else None,
            )
            task = asyncio.create_task(consumer.run())
            conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
            first_seen = None
            while True:
                done = await conn.fetchval("SELECT count(*) FROM inbox")
                if done and first_seen is None:
                    first_seen = time.perf_counter()
                if done >= events:
                    break
                await asyncio.sleep(0.05)
            finished = time.perf_counter()
            await conn.close()
            await consumer.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.dispose()
            assert first_seen is not None
            results[label] = events / (finished - first_seen)
    finally:
        broker.stop()
        for url in urls:
            await drop_database(url)
    base = results["baseline: inbox only"]
    rows = "\n".join(
        f"| {label} | {rate:.0f} | {rate / base:.2f} |" for label, rate in results.items()
    )
    append_results(
        f"## Tiering consumer, per event ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `python -m bench.tiering events --events {events}`: "
        f"{events} `purchase.recorded` events over 500 customers, already on the embedded "
        "broker; one consumer; one transaction per partition per poll (inbox rows, effects, "
        "then each customer reassessed once). Rate counted from the first applied event (the "
        "group join is left out).\n\n"
        "| handler | events/s | ratio to baseline |\n|---|---|---|\n" + rows + "\n"
    )


# ---------------------------------------------------------------- churn back-test
def auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pairs = sorted(zip(scores, labels, strict=True))
    ranks: list[float] = [0.0] * len(pairs)
    start = 0
    while start < len(pairs):
        end = start
        while end + 1 < len(pairs) and pairs[end + 1][0] == pairs[start][0]:
            end += 1
        for k in range(start, end + 1):
            ranks[k] = (start + end) / 2 + 1
        start = end + 1
    positives = sum(1 for _, label in pairs if label)
    negatives = len(pairs) - positives
    rank_sum = sum(rank for rank, (_, label) in zip(ranks, pairs, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


async def bench_churn(customers: int) -> None:
    """Synthetic history: every customer buys at a rate of its own; some slow down and
    stop at a random time. Score as of the start of a 90-day holdout; who bought nothing
    in the holdout is the churned class."""
    rng = random.Random(11)
    url = await new_database("postgresql", "churn", ROOT)
    name = database_name(url)
    try:
        await migrate(url, MIGRATIONS)
        as_of = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
        start = epoch_day(as_of) - 730
        holdout_end = epoch_day(as_of) + 90
        ids = [uuid.uuid4() for _ in range(customers)]
        daily: dict[tuple[int, int], int] = {}
        bought_in_holdout: list[bool] = []
        for index in range(customers):
            cycle = rng.choice([7, 14, 30, 45, 60, 90])
            stops = rng.random() < 0.4
            stop_day = rng.randrange(start + 200, holdout_end) if stops else holdout_end + 1
            decay = rng.random() < 0.5  # churners often slow down before they stop
            day = start + rng.randrange(cycle)
            in_holdout = False
            while day < holdout_end and day < stop_day:
                daily[(index, day)] = daily.get((index, day), 0) + 1
                if day >= epoch_day(as_of):
                    in_holdout = True
                gap = cycle
                if stops and decay and stop_day - day < 240:
                    gap = int(cycle * 2.5)
                day += max(1, int(rng.expovariate(1 / gap)))
            bought_in_holdout.append(in_holdout)
        conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
        await copy_customers(conn, ids)
        await conn.copy_records_to_table(
            "daily_activity",
            columns=["customer_key", "day", "revenue", "quantity", "purchases", "collected"],
            records=(
                (i + 1, day, 1000 * n, 1000 * n, n, 1000 * n) for (i, day), n in daily.items()
            ),
        )
        await conn.close()
        engine = create_engine(url)
        async with session_factory(engine)() as session:
            ranking = await rank(session, DEFAULT_POLICY, as_of)
        await engine.dispose()
    finally:
        await drop_database(url)
    index_of = {cid: n for n, cid in enumerate(ids)}
    last_day: dict[int, int] = {}
    for i, day in daily:
        if day < epoch_day(as_of):
            last_day[i] = max(last_day.get(i, -(10**9)), day)
    risk, recency, churned = [], [], []
    for row in ranking.changed_rows():
        n = index_of[row["customer_id"]]
        if row["churn_risk"] is None or n not in last_day:
            continue  # never bought before as_of: no score
        risk.append(round(row["churn_risk"], 3))
        recency.append(float(epoch_day(as_of) - last_day[n]))
        churned.append(not bought_in_holdout[n])
    share = sum(churned) / len(churned)
    flagged = [c for c, r in zip(churned, risk, strict=True) if r >= DEFAULT_POLICY.churn.threshold]  # type: ignore[union-attr]
    precision = sum(flagged) / len(flagged) if flagged else 0.0
    append_results(
        f"## Churn-risk back-test ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `python -m bench.tiering churn --customers {customers}`: "
        "synthetic two-year histories (each customer its own cycle; 40% stop at a random "
        "time, half of them slowing down first); scores as of the start of a 90-day holdout, "
        "seeing nothing after it.\n\n"
        f"- customers scored: {len(churned)}; share with no purchase in the holdout: "
        f"{share:.1%}\n"
        f"- ROC AUC of the churn-risk score: **{auc(risk, churned):.3f}**; of recency alone "
        f"(days since the last purchase), the baseline: {auc(recency, churned):.3f}\n"
        f"- flagged at risk (risk >= {DEFAULT_POLICY.churn.threshold}): "  # type: ignore[union-attr]
        f"{len(flagged)}, of whom {precision:.1%} bought nothing in the holdout\n"
        f"- median risk, churned vs stayed: {statistics.median(r for r, c in zip(risk, churned, strict=True) if c):.3f}"  # noqa: E501
        f" vs {statistics.median(r for r, c in zip(risk, churned, strict=True) if not c):.3f}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    rerank_args = sub.add_parser("rerank")
    rerank_args.add_argument("--customers", type=int, default=1_000_000)
    rerank_args.add_argument("--purchases", type=int, default=10_000_000)
    events_args = sub.add_parser("events")
    events_args.add_argument("--events", type=int, default=5000)
    churn_args = sub.add_parser("churn")
    churn_args.add_argument("--customers", type=int, default=20000)
    args = parser.parse_args()
    if args.what == "rerank":
        asyncio.run(bench_rerank(args.customers, args.purchases))
    elif args.what == "events":
        asyncio.run(bench_events(args.events))
    else:
        asyncio.run(bench_churn(args.customers))


if __name__ == "__main__":
    main()
