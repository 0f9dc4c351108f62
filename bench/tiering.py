"""Tiering benchmarks: full re-rank, per-event consumer rate, churn back-test.

    python -m bench.tiering rerank  [--customers 1000000 --purchases 10000000 --first-runs 3]
    python -m bench.tiering events  [--events 100000 --consumers 1]
    python -m bench.tiering latency [--customers 1000000 --purchases 10000000]
    python -m bench.tiering churn   [--customers 20000]
    python -m bench.tiering churn   --file CDNOW_master.txt [--as-of 1997-09-30 --holdout-days 273]

Each appends a section to bench/RESULTS.md with the machine and the date. The re-rank
seeds the daily aggregates directly (as the consumer would have built them) on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from bench.common import (
    PG,
    ROOT,
    append_results,
    database_name,
    drop_database,
    events_applied,
    machine,
    machine_cpu_seconds,
    new_database,
    peak_rss_mib,
    python_step_ns,
)
from services.tiering.churn_fit import fit_churn_model
from services.tiering.consumers import BULK_HANDLERS, HANDLERS, reassess_customers
from services.tiering.feed import TierChangeFeed
from services.tiering.models import epoch_day
from services.tiering.ranking.store import rank
from services.tiering.schemas import DEFAULT_POLICY
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.app import tune_garbage_collector
from shared.broker import EmbeddedBroker
from shared.consumer import EventConsumer
from shared.db import create_engine, migrate, session_factory
from shared.events import EventData, EventEnvelope
from shared.observability import Metrics
from shared.outbox import OutboxRelay
from shared.topics import ensure_platform_topics

MIGRATIONS = ROOT / "services" / "tiering" / "migrations"
KEYS = {"bench-admin-key-0123456789abcdef": {"roles": ["admin"], "user": "bench"}}
BENCH_ADMIN = {"Authorization": "Bearer bench-admin-key-0123456789abcdef"}


# ---------------------------------------------------------------- re-rank
async def copy_customers(
    conn: asyncpg.Connection,
    ids: list[uuid.UUID],
    seen: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    order: Sequence[int] | None = None,
) -> None:
    """One aggregate row per customer, keyed 1..n, as the consumer creates them, written
    in key order or in `order` (positions in `ids`)."""
    await conn.copy_records_to_table(
        "customer_aggregates",
        columns=[
            "customer_id",
            "key",
            "known",
            "erased",
            "first_seen_at",
            "updated_at",
        ],
        records=(
            (ids[n], n + 1, True, False, seen, seen)
            for n in (range(len(ids)) if order is None else order)
        ),
    )


def _chunked_rows(*columns: Any, size: int = 200_000) -> Any:
    """Rows from numpy columns, a chunk at a time (never a list of all of them)."""
    for start in range(0, len(columns[0]), size):
        yield from zip(*[column[start : start + size].tolist() for column in columns], strict=True)


async def seed(name: str, customers: int, purchases: int, today: int) -> None:
    conn = await asyncpg.connect(database=name, **PG)
    try:
        await seed_into(conn, customers, purchases, today)
    finally:
        await conn.close()


async def seed_into(conn: asyncpg.Connection, customers: int, purchases: int, today: int) -> None:
    """Aggregates as the consumer builds them: one row per customer, one per active day."""
    rng = np.random.default_rng(7)
    raw_ids = rng.bytes(16 * customers)
    ids = [uuid.UUID(bytes=raw_ids[16 * n : 16 * n + 16], version=4) for n in range(customers)]
    # Laid out as a table months old is: every event rewrites a customer's aggregate row
    # (so they are in no key order), and daily rows are added day by day. (A generator
    # of its own, so the data stays what it was.)
    layout = np.random.default_rng(8)
    await copy_customers(conn, ids, order=layout.permutation(customers).tolist())
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
    by_day = np.lexsort((layout.random(cells.size), -(cells % 1000)))  # oldest day first
    await conn.copy_records_to_table(
        "daily_activity",
        columns=["customer_key", "day", "revenue", "quantity", "purchases", "collected"],
        records=_chunked_rows(
            *(
                column[by_day]
                for column in (
                    cells // 1000 + 1,
                    today - cells % 1000,
                    revenue.astype(np.int64),
                    quantity.astype(np.int64),
                    bought,
                    (revenue * 9 // 10).astype(np.int64),
                )
            )
        ),
    )
    # A database built over months has been vacuumed by autovacuum and long checkpointed:
    # without these, the first measured ranking sets the hint bits of every daily row it
    # reads (writing the whole table again), and the seed's gigabyte of WAL has
    # PostgreSQL checkpointing during it.
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")


def seed_elsewhere(name: str, customers: int, purchases: int, today: int) -> None:
    """Seed in a child process, so the peak memory measured is the re-rank's own."""
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        pool.submit(_seed_sync, name, customers, purchases, today).result()


def _seed_sync(name: str, customers: int, purchases: int, today: int) -> None:
    asyncio.run(seed(name, customers, purchases, today))


async def forget_rankings(name: str) -> None:
    """Back to before the first ranking: no score rows, history nor rankings (checkpointed,
    as `seed_into` leaves the database)."""
    conn = await asyncpg.connect(database=name, **PG)
    try:
        await conn.execute("TRUNCATE customer_scores, tier_history, rankings")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def bench_rerank(customers: int, purchases: int, first_runs: int = 1) -> None:
    url = await new_database("postgresql", "rerank", ROOT)
    name = database_name(url)
    try:
        await migrate(url, MIGRATIONS)
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        seed_elsewhere(name, customers, purchases, epoch_day(now))
        seeded = time.perf_counter() - started
        tune_garbage_collector(TieringSettings(database_url=url, api_keys=KEYS))  # as crm serve
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await tiering_service.ensure_default_policy(session)
        firsts, speeds = [], []
        for run in range(first_runs):
            if run:
                await forget_rankings(name)
            # The host's speed drifts by half within minutes here: each run says its own.
            speeds.append(python_step_ns())
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                first = await tiering_service.apply_ranking(session, now)
            firsts.append(time.perf_counter() - started)
        timings = [statistics.median(firsts)]
        changed = [first.changed]
        for moment in (now, now, now + dt.timedelta(days=1)):
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                outcome = await tiering_service.apply_ranking(session, moment)
            timings.append(time.perf_counter() - started)
            changed.append(outcome.changed)
        # Ranking alone (no writes): what simulate costs.
        started = time.perf_counter()
        async with sessions() as session:
            await rank(session, DEFAULT_POLICY, now)
        ranking_only = time.perf_counter() - started
        announced, announcing = await announce_everything(url, engine)
        await engine.dispose()
        conn = await asyncpg.connect(database=name, **PG)
        daily_rows = await conn.fetchval("SELECT count(*) FROM daily_activity")
        await conn.close()
    finally:
        await drop_database(url)
    append_results(
        f"## Tiering re-rank ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `python -m bench.tiering rerank --customers {customers} "
        f"--purchases {purchases} --first-runs {first_runs}`: {customers} customers, "
        f"{purchases} purchases over two years "
        f"(heavy-tailed), held as {daily_rows} daily aggregate rows (seeding took "
        f"{seeded:.0f} s). Default policy: share bands on 365-day revenue plus RFM, "
        "thermometer and churn, computed over numpy columns read by binary COPY.\n\n"
        "| run | seconds | tiers changed |\n|---|---|---|\n"
        "| first (everyone gets a tier: a history row each, which is its event)"
        + (
            f", median of {first_runs} from no standing ("
            + ", ".join(f"{t:.1f} at {ns:.0f} ns" for t, ns in zip(firsts, speeds, strict=True))
            + " a loop step)"
            if first_runs > 1
            else ""
        )
        + f" | {timings[0]:.1f} | {changed[0]} |\n"
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


# ---------------------------------------------------------------- API during a re-rank
async def light_get_latencies(
    client: Any, until: asyncio.Future[Any] | None, count: int
) -> list[float]:
    """Milliseconds of `GET /v1/policies` sent on a fixed schedule, one every 10 ms: each
    measured from when it was due, so a stalled loop counts as the wait it causes (no
    coordinated omission). `count` of them, or as many as fall before `until` is done."""
    found: list[float] = []
    start = time.perf_counter()
    while (until is None and len(found) < count) or (until is not None and not until.done()):
        due = start + 0.01 * len(found)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response = await client.get("/v1/policies", headers=BENCH_ADMIN)
        assert response.status_code == 200, response.text
        found.append((time.perf_counter() - due) * 1000)
    return found


def _quantiles(values: list[float]) -> str:
    p50, p99 = np.percentile(values, [50, 99])
    return f"{p50:.1f} | {p99:.1f} | {max(values):.0f} | {len(values)}"


async def bench_latency(customers: int, purchases: int) -> None:
    """p99 of a light GET while the same process re-ranks everyone: with the numpy half
    in a worker thread (as shipped), and run on the event loop (the baseline)."""
    import httpx

    from services.tiering import service as tiering_module
    from services.tiering.app import create_app
    from services.tiering.ranking import store

    url = await new_database("postgresql", "latency", ROOT)
    name = database_name(url)
    rows: list[str] = []
    try:
        await migrate(url, MIGRATIONS)
        now = dt.datetime.now(dt.UTC)
        seed_elsewhere(name, customers, purchases, epoch_day(now))
        settings = TieringSettings(
            database_url=url, api_keys=KEYS, run_background=False, kafka_bootstrap="127.0.0.1:1"
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await client.post("/v1/recompute", headers=BENCH_ADMIN)  # the first ranking
                rows.append(
                    f"| idle | {_quantiles(await light_get_latencies(client, None, 300))} |"
                )

                async def on_loop(work: Any, *args: Any, **kwargs: Any) -> Any:
                    return work(*args, **kwargs)

                for label, runner in (
                    ("re-rank, numpy on the event loop (baseline)", on_loop),
                    ("re-rank, numpy in a worker thread (shipped)", store.in_thread),
                ):
                    store.in_thread = runner  # type: ignore[assignment]
                    tiering_module.in_thread = runner  # type: ignore[assignment]
                    started = time.perf_counter()
                    rerank = asyncio.ensure_future(
                        client.post("/v1/recompute", headers=BENCH_ADMIN)
                    )
                    found = await light_get_latencies(client, rerank, 0)
                    seconds = time.perf_counter() - started
                    assert (await rerank).status_code == 200
                    rows.append(f"| {label} ({seconds:.1f} s) | {_quantiles(found)} |")
    finally:
        await drop_database(url)
    append_results(
        f"## Tiering API during a re-rank ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `python -m bench.tiering latency --customers {customers} "
        f"--purchases {purchases}`: `GET /v1/policies` due every 10 ms (timed from when "
        "it was due), in the process that "
        "re-ranks everyone (`POST /v1/recompute`, the same data a second time: scores move, "
        "few tiers change), milliseconds.\n\n"
        "| while | p50 | p99 | max | requests |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


# ---------------------------------------------------------------- per-event rate
async def bench_events(
    events: int, customers_count: int, backend: str, partitions: int, consumers: int
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    urls: list[str] = []
    try:
        results: dict[str, Consumed] = {}
        for label, with_handlers in (("baseline: inbox only", False), ("tiering handlers", True)):
            url = await new_database(backend, f"events{len(urls)}", ROOT / ".crm")
            urls.append(url)
            await migrate(url, MIGRATIONS)
            prefix = f"b{uuid.uuid4().hex[:8]}."
            options = {
                "database_url": url,
                "kafka_bootstrap": broker.bootstrap,
                "kafka_topic_prefix": prefix,
                "api_keys": KEYS,
                "consumer_group": f"bench-{prefix}",
                "kafka_partitions": partitions,
            }
            settings = TieringSettings(**options)
            engine = create_engine(url)
            sessions = session_factory(engine)
            async with sessions() as session, session.begin():
                await tiering_service.ensure_default_policy(session)
                # As on a large install: customers touched by events are placed against
                # the latest ranking's band edges, not ranked all again.
                await tiering_service.recompute(session, None)
            await engine.dispose()
            await ensure_platform_topics(settings)
            await _send_purchases(settings, events, customers_count)
            results[label] = await asyncio.to_thread(
                consume, options, with_handlers, backend, consumers, events
            )
    finally:
        broker.stop()
        for url in urls:
            await drop_database(url)
    base = results["baseline: inbox only"].rate
    cores = os.cpu_count() or 1
    rows = "\n".join(
        f"| {label} | {found.rate:.0f} | {found.rate / base:.2f} | {found.consumer_cpu * 1e6:.0f} "
        f"| {found.machine_cpu * 1e6:.0f} | {cores / found.machine_cpu:.0f} |"
        for label, found in results.items()
    )
    append_results(
        f"## Tiering consumer, per event ({dt.date.today()}, {backend})\n\n"
        f"Machine: {machine()}. `python -m bench.tiering events --backend {backend} "
        f"--events {events} --customers {customers_count} --partitions {partitions} "
        f"--consumers {consumers}`: {events} `purchase.recorded` events over "
        f"{customers_count} customers (amounts 1.00-5,000.00, quantities 1-5, on days "
        "spread over the last year), already on the embedded "
        f"broker, on {partitions} partitions; {consumers} consumer process(es) in one "
        "group, as replicas of the service would be; one transaction per partition per "
        "poll (inbox rows, effects, then each customer reassessed once). Counted once every "
        "consumer holds its share of the partitions (the group join and its rebalance are "
        "left out): events applied from then on, over the time they took. CPU: the "
        "consumer processes' CPU time per event, which varies less between runs than the "
        "rate; machine CPU: every process's (PostgreSQL and the broker too), and the rate "
        f"it would allow with all {cores} cores busy.\n\n"
        "| handler | events/s | ratio to baseline | consumer CPU µs/event "
        "| machine CPU µs/event | rate with all cores busy |\n|---|---|---|---|---|---|\n"
        + rows
        + "\n"
    )


async def _send_purchases(settings: TieringSettings, events: int, customers_count: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    customers = [uuid.uuid4() for _ in range(customers_count)]
    futures = []
    # Amounts, quantities and days vary as in a real history (equal values would
    # flatter the writes: a column whose values are all alike is sent as one).
    rng = random.Random(5)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=365)
    for n in range(events):
        customer = customers[n % len(customers)]
        when = (start + dt.timedelta(seconds=rng.randrange(365 * 86400))).isoformat()
        envelope = {
            "id": str(uuid.uuid4()),
            "type": "purchase.recorded",
            "version": 1,
            "occurred_at": when,
            "producer": "profile",
            "customer_id": str(customer),
            "data": {
                "purchase_id": str(uuid.uuid4()),
                "amount": f"{rng.randrange(100, 500_000) / 100:.2f}",
                "currency": "CNY",
                "quantity": str(rng.randrange(1, 6)),
                "purchased_at": when,
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


@dataclass
class Consumed:
    rate: float  # events applied a second, once every consumer holds partitions
    consumer_cpu: float  # the consumer processes' CPU seconds an event
    machine_cpu: float  # every process's CPU seconds an event


def consume(
    options: dict[str, Any], with_handlers: bool, backend: str, consumers: int, events: int
) -> Consumed:
    """Run `consumers` consumer processes in one group until they have applied `events`
    events; measured from the moment each holds a share of the topic's partitions."""
    context = multiprocessing.get_context("spawn")
    applied = context.Array("q", consumers, lock=False)
    cpu = context.Array("d", consumers, lock=False)
    held = context.Array("i", consumers, lock=False)
    stop = context.Event()
    processes = [
        context.Process(
            target=_consumer_process,
            args=(options, with_handlers, backend, index, applied, cpu, held, stop),
        )
        for index in range(consumers)
    ]
    for process in processes:
        process.start()
    try:
        partitions = options["kafka_partitions"]
        while not (all(held) and sum(held) == partitions):
            if not all(process.is_alive() for process in processes):
                raise RuntimeError("a consumer process stopped")
            time.sleep(0.005)
        started, applied_then = time.perf_counter(), sum(applied)
        cpu_then, machine_then = sum(cpu), machine_cpu_seconds()
        while sum(applied) < events:
            if not all(process.is_alive() for process in processes):
                raise RuntimeError("a consumer process stopped")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        counted = sum(applied) - applied_then
        machine_used = machine_cpu_seconds() - machine_then
        time.sleep(0.1)  # the processes' last CPU readings
        consumer_used = sum(cpu) - cpu_then
    finally:
        stop.set()
        for process in processes:
            process.join(30)
    return Consumed(counted / elapsed, consumer_used / counted, machine_used / counted)


def _consumer_process(
    options: dict[str, Any],
    with_handlers: bool,
    backend: str,
    index: int,
    applied: Any,
    cpu: Any,
    held: Any,
    stop: Any,
) -> None:
    asyncio.run(_consume(options, with_handlers, backend, index, applied, cpu, held, stop))


async def _consume(
    options: dict[str, Any],
    with_handlers: bool,
    backend: str,
    index: int,
    applied: Any,
    cpu: Any,
    held: Any,
    stop: Any,
) -> None:
    """One consumer process: as the service's (its handlers, or none for the baseline),
    reporting the events it applied, its CPU time and how many of the purchase topic's
    partitions it holds."""
    settings = TieringSettings(**options)
    engine = create_engine(settings.database_url)
    tiering_service.full_ranking_below = 0

    async def nothing(session: Any, event: EventEnvelope, data: EventData) -> None:
        return None

    tune_garbage_collector(settings)  # as `crm serve` does once the service is loaded
    consumer = EventConsumer(
        settings,
        engine,
        HANDLERS if with_handlers else {"purchase.recorded": nothing},
        Metrics("bench"),
        after_batch=reassess_customers if with_handlers else None,
        bulk_handlers=BULK_HANDLERS if with_handlers else None,
        concurrent_partitions=backend == "postgresql",
    )
    topic = settings.topic("purchase.recorded")
    task = asyncio.create_task(consumer.run())
    while not stop.is_set():
        applied[index] = events_applied(consumer.metrics)
        cpu[index] = time.process_time()
        member = consumer.consumer
        held[index] = sum(1 for part in member.assignment() if part.topic == topic) if member else 0
        await asyncio.sleep(0.01)
    await consumer.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()


# ---------------------------------------------------------------- churn back-test
@dataclass
class ChurnHistory:
    """Purchases per (customer, day) up to the end of a holdout, scored as of its start."""

    command: str
    description: str
    as_of: dt.datetime
    holdout_days: int
    customers: int
    # (customer index, epoch day) -> (revenue in fen, quantity in thousandths, purchases)
    daily: dict[tuple[int, int], tuple[int, int, int]]
    first_seen: dt.datetime


def synthetic_history(customers: int) -> ChurnHistory:
    """Every customer buys at a rate of its own; 40% stop at a random time, half of them
    slowing down first. Scored as of the start of a 90-day holdout."""
    rng = random.Random(11)
    as_of = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
    start = epoch_day(as_of) - 730
    holdout_end = epoch_day(as_of) + 90
    daily: dict[tuple[int, int], tuple[int, int, int]] = {}
    for index in range(customers):
        cycle = rng.choice([7, 14, 30, 45, 60, 90])
        stops = rng.random() < 0.4
        stop_day = rng.randrange(start + 200, holdout_end) if stops else holdout_end + 1
        decay = rng.random() < 0.5  # churners often slow down before they stop
        day = start + rng.randrange(cycle)
        while day < holdout_end and day < stop_day:
            n = daily.get((index, day), (0, 0, 0))[2] + 1
            daily[(index, day)] = (1000 * n, 1000 * n, n)
            gap = cycle
            if stops and decay and stop_day - day < 240:
                gap = int(cycle * 2.5)
            day += max(1, int(rng.expovariate(1 / gap)))
    return ChurnHistory(
        f"python -m bench.tiering churn --customers {customers}",
        "synthetic two-year histories (each customer its own cycle; 40% stop at a random "
        "time, half of them slowing down first); scored as of the start of a 90-day holdout",
        as_of,
        90,
        customers,
        daily,
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )


def file_history(path: str, as_of: dt.datetime, holdout_days: int) -> ChurnHistory:
    """A public purchase history in CDNOW's layout (customer, YYYYMMDD, units, dollars per
    line; `lifetimes/datasets/CDNOW_master.txt` in the `lifetimes` wheel on PyPI)."""
    index_of: dict[str, int] = {}
    daily: dict[tuple[int, int], tuple[int, int, int]] = {}
    first = None
    with open(path) as lines:
        for line in lines:
            fields = line.split()
            if len(fields) != 4 or not fields[1].isdigit():
                continue  # the header
            customer, day_text, units, dollars = fields
            day = epoch_day(dt.date(int(day_text[:4]), int(day_text[4:6]), int(day_text[6:])))
            first = day if first is None else min(first, day)
            index = index_of.setdefault(customer, len(index_of))
            revenue, quantity, purchases = daily.get((index, day), (0, 0, 0))
            daily[(index, day)] = (
                revenue + round(float(dollars) * 100),
                quantity + int(units) * 1000,
                purchases + 1,
            )
    return ChurnHistory(
        f"python -m bench.tiering churn --file {path} --as-of {as_of.date()} "
        f"--holdout-days {holdout_days}",
        f"{len(daily):,} purchase days of {len(index_of):,} customers from {path}; scored as "
        f"of {as_of.date()}, seeing nothing after it, against whether each customer bought "
        f"in the following {holdout_days} days",
        as_of,
        holdout_days,
        len(index_of),
        daily,
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    )


async def bench_churn(history: ChurnHistory) -> None:
    """The rule-based and the learned churn risk (fitted as of the holdout's start on the
    history before it) against recency alone, on the same customers and holdout."""
    from sklearn.metrics import roc_auc_score

    url = await new_database("postgresql", "churn", ROOT)
    name = database_name(url)
    as_of, end = history.as_of, epoch_day(history.as_of)
    ids = [uuid.uuid4() for _ in range(history.customers)]
    horizon = history.holdout_days
    churn = DEFAULT_POLICY.churn
    assert churn is not None
    rules = DEFAULT_POLICY.model_copy(
        update={"churn": churn.model_copy(update={"method": "rules"})}
    )
    learned = DEFAULT_POLICY.model_copy(
        update={"churn": churn.model_copy(update={"horizon_days": horizon})}
    )
    try:
        await migrate(url, MIGRATIONS)
        conn = await asyncpg.connect(database=name, **PG)
        await copy_customers(conn, ids, history.first_seen)
        await conn.copy_records_to_table(
            "daily_activity",
            columns=["customer_key", "day", "revenue", "quantity", "purchases", "collected"],
            records=(
                (i + 1, day, revenue, quantity, n, revenue)
                for (i, day), (revenue, quantity, n) in history.daily.items()
            ),
        )
        await conn.close()
        engine = create_engine(url)
        async with session_factory(engine)() as session:
            by_rules = await rank(session, rules, as_of)
        async with session_factory(engine)() as session, session.begin():
            started = time.perf_counter()
            fit = await fit_churn_model(session, learned, as_of)
            fit_seconds = time.perf_counter() - started
            session.add(fit)
        async with session_factory(engine)() as session:
            by_model = await rank(session, learned, as_of)
        await engine.dispose()
    finally:
        await drop_database(url)
    index_of = {cid: n for n, cid in enumerate(ids)}
    last_before: dict[int, int] = {}
    bought_after: set[int] = set()
    for i, day in history.daily:
        if day <= end:
            last_before[i] = max(last_before.get(i, -(10**9)), day)
        elif day <= end + horizon:
            bought_after.add(i)

    def scored(ranking: Any) -> dict[int, float]:
        return {
            index_of[row["customer_id"]]: row["churn_risk"]
            for row in ranking.changed_rows()
            if row["churn_risk"] is not None
        }

    rule_risk, model_risk = scored(by_rules), scored(by_model)
    people = sorted(set(last_before) & set(rule_risk) & set(model_risk))
    churned = [i not in bought_after for i in people]
    recency_auc = roc_auc_score(churned, [end - last_before[i] for i in people])
    rules_auc = roc_auc_score(churned, [rule_risk[i] for i in people])
    model_auc = roc_auc_score(churned, [model_risk[i] for i in people])
    append_results(
        f"## Churn risk against recency ({dt.date.today()}, PostgreSQL)\n\n"
        f"Machine: {machine()}. `{history.command}`: {history.description}.\n\n"
        f"| score | ROC AUC, no purchase in the {horizon} days after |\n|---|---|\n"
        f"| baseline: days since the last purchase | {recency_auc:.3f} |\n"
        f"| rule-based churn risk | {rules_auc:.3f} |\n"
        f"| learned churn risk (status: {'used' if fit.used else 'not used'}) | "
        f"**{model_auc:.3f}** |\n\n"
        f"Customers scored: {len(people):,}; share with no purchase after: "
        f"{sum(churned) / len(churned):.1%}. The fit (as of {as_of.date()}, {fit_seconds:.1f} s): "
        f"labels over {fit.label_days} days, trained on {fit.trained_on:,} and back-tested on "
        f"{fit.tested_on:,} customers; its own back-test AUC {fit.auc} against recency "
        f"{fit.recency_auc}{'; ' + fit.reason if fit.reason else ''}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    rerank_args = sub.add_parser("rerank")
    rerank_args.add_argument("--customers", type=int, default=1_000_000)
    rerank_args.add_argument("--purchases", type=int, default=10_000_000)
    rerank_args.add_argument(
        "--first-runs", type=int, default=1, help="first rankings, each from no standing"
    )
    latency_args = sub.add_parser("latency")
    latency_args.add_argument("--customers", type=int, default=1_000_000)
    latency_args.add_argument("--purchases", type=int, default=10_000_000)
    events_args = sub.add_parser("events")
    events_args.add_argument("--events", type=int, default=100_000)
    events_args.add_argument("--customers", type=int, default=20_000)
    events_args.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    # The platform's default (CRM_KAFKA_PARTITIONS): each partition is a transaction at once.
    partitions = TieringSettings.model_fields["kafka_partitions"].default
    events_args.add_argument("--partitions", type=int, default=partitions)
    # Processes in one consumer group, as replicas of the service would run.
    events_args.add_argument("--consumers", type=int, default=1)
    churn_args = sub.add_parser("churn")
    churn_args.add_argument("--customers", type=int, default=20000)
    churn_args.add_argument("--file", help="a purchase history in CDNOW's layout instead")
    churn_args.add_argument("--as-of", default="1997-09-30", help="with --file: score then")
    churn_args.add_argument("--holdout-days", type=int, default=273, help="with --file")
    args = parser.parse_args()
    if args.what == "rerank":
        asyncio.run(bench_rerank(args.customers, args.purchases, args.first_runs))
    elif args.what == "latency":
        asyncio.run(bench_latency(args.customers, args.purchases))
    elif args.what == "events":
        asyncio.run(
            bench_events(args.events, args.customers, args.backend, args.partitions, args.consumers)
        )
    elif args.file:
        as_of = dt.datetime.fromisoformat(args.as_of).replace(
            hour=23, minute=59, second=59, tzinfo=dt.UTC
        )
        asyncio.run(bench_churn(file_history(args.file, as_of, args.holdout_days)))
    else:
        asyncio.run(bench_churn(synthetic_history(args.customers)))


if __name__ == "__main__":
    main()
