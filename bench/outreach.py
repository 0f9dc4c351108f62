"""Outreach benchmarks: dispatch rate with two replicas, and due moment -> delivery.

    python -m bench.outreach dispatch [--tasks 20000 --replicas 2 --batch 1]
    python -m bench.outreach latency  [--pending 100000 --due 1000 --window 20]
    python -m bench.outreach planning [--customers 1000000]

Both run on PostgreSQL against the stand-in gateway (bench/provider.py) in a process of
its own, which counts requests and distinct idempotency keys (sent twice = a key seen
twice). `dispatch` seeds due SMS tasks and runs the replicas as separate processes until
everything is delivered; the baseline, in the same run, is a bare httpx loop posting the
same number of messages to the same gateway with the same concurrency (with `--batch N`,
the replicas post N messages a request to the gateway's batch endpoint, and a second bare
loop posts the same batches). `latency` seeds
pending tasks far ahead plus some due in the next seconds, runs the service's scheduler,
and measures each due moment to the gateway's first sight of the message. `planning`
seeds customers (birthdays, a tenth lunar; contacts' birthdays; purchase cycles; tiers)
and plans a year of their contacts as the scheduled planner does, beside reading the same
customers alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from bench.common import ROOT, append_results, drop_database, machine, new_database, peak_rss_mib
from services.outreach import repository as repo
from services.outreach.app import create_app
from services.outreach.channels import ClientPool, HttpProvider
from services.outreach.dispatcher import Dispatcher
from services.outreach.planning import PLANNING_BATCH, plan_everyone
from services.outreach.service import outreach_service
from services.outreach.settings import OutreachSettings
from shared.db import create_engine, migrate, session_factory

MIGRATIONS = ROOT / "services" / "outreach" / "migrations"
PORT = 8911
GATEWAY = f"http://127.0.0.1:{PORT}"
KEYS = {"bench-admin-key-0123456789abcdef": {"roles": ["admin"], "user": "bench"}}
OPEN_ALL_DAY = {"quiet_hours": {"start": "00:00", "end": "00:00"}}
CONCURRENCY = 64


def start_gateway() -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.provider", "--port", str(PORT)], cwd=ROOT
    )
    for _ in range(100):
        try:
            httpx.get(f"{GATEWAY}/stats", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the gateway did not start")


def gateway_stats() -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{GATEWAY}/stats", timeout=30).json()
    return stats


def pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def seed_plan(url: str) -> None:
    """Every tier's plan without quiet hours (the benchmark runs at any hour)."""
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO service_plans (tier, document, updated_at, updated_by) "
            "VALUES ('*', $1, now(), 'bench')",
            json.dumps(OPEN_ALL_DAY),
        )
    finally:
        await conn.close()


async def seed(url: str, due: list[dt.datetime]) -> list[uuid.UUID]:
    """A customer per task (SMS consent, a phone number) and an SMS revisit due at each
    moment. Returns the task ids."""
    conn = await asyncpg.connect(pg_dsn(url))
    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4() for _ in due]
    try:
        for start in range(0, len(due), 50_000):
            chunk = range(start, min(start + 50_000, len(due)))
            customers = [uuid.uuid4() for _ in chunk]
            await conn.copy_records_to_table(
                "recipients",
                columns=[
                    "customer_id",
                    "timezone",
                    "key_dates",
                    "contacts",
                    "consent",
                    "field_times",
                ],
                records=[
                    (
                        customer,
                        "Asia/Shanghai",
                        "[]",
                        json.dumps([{"id": "c", "phone": "+86 138 0000 0000"}]),
                        '{"sms": "granted"}',
                        "{}",
                    )
                    for customer in customers
                ],
            )
            await conn.copy_records_to_table(
                "tasks",
                columns=[
                    "id",
                    "customer_id",
                    "kind",
                    "occasion",
                    "channel",
                    "marketing",
                    "priority",
                    "due_at",
                    "status",
                    "basis",
                    "decisions",
                    "attempts",
                    "created_at",
                    "updated_at",
                ],
                records=[
                    (
                        ids[index],
                        customer,
                        "revisit",
                        "revisit:1",
                        "sms",
                        False,
                        7,
                        due[index],
                        "pending",
                        "{}",
                        "[]",
                        0,
                        now,
                        now,
                    )
                    for index, customer in zip(chunk, customers, strict=True)
                ],
            )
        await conn.execute("ANALYZE tasks; ANALYZE recipients")
    finally:
        await conn.close()
    return ids


def replica(url: str, batch: int) -> None:
    """One dispatcher process: passes until nothing has been due for two passes."""

    async def run() -> None:
        engine = create_engine(url)
        path = "/send-batch" if batch > 1 else "/send"
        async with ClientPool(CONCURRENCY) as clients:
            dispatcher = Dispatcher(
                session_factory(engine),
                HttpProvider(f"{GATEWAY}{path}", "secret", 10.0, clients, batch),
                batch_size=500,
                concurrency=CONCURRENCY,
            )
            idle = 0
            while idle < 2:
                seen, _ = await dispatcher.run_once(dt.datetime.now(dt.UTC))
                idle = idle + 1 if seen == 0 else 0
                if seen == 0:
                    await asyncio.sleep(0.2)
        await engine.dispose()

    asyncio.run(run())


async def bare_loop(count: int, batch: int = 1) -> float:
    """The baseline: post `count` messages with the same concurrency, nothing else (one a
    request, or `batch` a request to the batch endpoint)."""
    limits = httpx.Limits(max_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one(index: int) -> None:
            async with gate:
                await client.post(
                    f"{GATEWAY}/send",
                    content=b'{"to": "+86 138 0000 0000"}',
                    headers={"Idempotency-Key": f"bare-{index}"},
                )

        async def many(start: int) -> None:
            messages = [
                {"idempotency_key": f"bare-{index}", "to": "+86 138 0000 0000"}
                for index in range(start, min(start + batch, count))
            ]
            async with gate:
                await client.post(f"{GATEWAY}/send-batch", json={"messages": messages})

        began = time.perf_counter()
        if batch > 1:
            await asyncio.gather(*(many(start) for start in range(0, count, batch)))
        else:
            await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - began


async def bench_dispatch(tasks: int, replicas: int, batch: int) -> None:
    url = await new_database("postgresql", "outreach_dispatch", Path(tempfile.mkdtemp()))
    gateway = start_gateway()
    try:
        await migrate(url, MIGRATIONS)
        await seed_plan(url)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await seed(url, [now] * tasks)
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=replica, args=(url, batch)) for _ in range(replicas)]
        began = time.perf_counter()
        for process in processes:
            process.start()
        while gateway_stats()["unique"] < tasks and any(p.is_alive() for p in processes):
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - began
        for process in processes:
            process.join()
        ours = gateway_stats()
        httpx.post(f"{GATEWAY}/reset", timeout=10)
        bare = await bare_loop(tasks)
        httpx.post(f"{GATEWAY}/reset", timeout=10)
        bare_batches = await bare_loop(tasks, batch) if batch > 1 else None
        conn = await asyncpg.connect(pg_dsn(url))
        sent = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'sent'")
        await conn.close()
    finally:
        gateway.terminate()
        await drop_database(url)
    rate, bare_rate = tasks / elapsed, tasks / bare
    per_request = f"{batch} messages a request" if batch > 1 else "one message a request"
    batched_row = (
        f"| baseline: bare httpx loop, {batch} a request | {bare_batches:.1f} | "
        f"{tasks / bare_batches:,.0f} | {tasks:,} | {tasks:,} | - |\n"
        if bare_batches is not None
        else ""
    )
    append_results(
        f"## Outreach: dispatching due SMS with {replicas} replicas, {per_request} "
        f"({dt.date.today()}, postgresql)\n\n"
        f"Machine: {machine()}. `python -m bench.outreach dispatch --tasks {tasks} "
        f"--replicas {replicas} --batch {batch}`: {tasks:,} due SMS tasks, each replica a "
        "process of its own (guardrails, claim, signed POST with the idempotency keys, "
        "record, outreach.completed in the outbox), the gateway a third process on the "
        "same 2 cores.\n\n"
        "| | seconds | deliveries/s | messages at the gateway | distinct keys | tasks sent |\n"
        "|---|---|---|---|---|---|\n"
        f"| dispatcher, {replicas} replicas | {elapsed:.1f} | {rate:,.0f} | "
        f"{ours['requests']:,} | {ours['unique']:,} | {sent:,} |\n"
        f"| baseline: bare httpx loop, one a request | {bare:.1f} | {bare_rate:,.0f} | "
        f"{tasks:,} | {tasks:,} | - |\n"
        f"{batched_row}\n"
        f"Ratio to the bare one-a-request loop: {rate / bare_rate:.2f}"
        + (f"; to the bare batch loop: {bare_batches / elapsed:.2f}" if bare_batches else "")
        + ". Sent twice: "
        f"{ours['requests'] - ours['unique']} (requests beyond distinct keys).\n"
    )


async def bench_latency(pending: int, due: int, window: float) -> None:
    url = await new_database("postgresql", "outreach_latency", Path(tempfile.mkdtemp()))
    gateway = start_gateway()
    try:
        await migrate(url, MIGRATIONS)
        await seed_plan(url)
        far = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        await seed(url, [far + dt.timedelta(seconds=i) for i in range(pending)])
        settings = OutreachSettings(
            database_url=url,
            api_keys=KEYS,
            log_json=False,
            kafka_bootstrap="127.0.0.1:1",
            provider_url=f"{GATEWAY}/send",
            planning_interval_s=0,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
            moments = [start + dt.timedelta(seconds=window * i / due) for i in range(due)]
            ids = await seed(url, moments)  # added while the service runs
            deadline = time.time() + window + 60
            while gateway_stats()["unique"] < due and time.time() < deadline:
                await asyncio.sleep(0.25)
            seen = httpx.get(f"{GATEWAY}/moments", timeout=30).json()
    finally:
        gateway.terminate()
        await drop_database(url)
    latencies = sorted(
        seen[str(task_id)] - moment.timestamp()
        for task_id, moment in zip(ids, moments, strict=True)
        if str(task_id) in seen
    )
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    append_results(
        f"## Outreach: due moment -> delivery with {pending:,} pending tasks "
        f"({dt.date.today()}, postgresql)\n\n"
        f"Machine: {machine()}. `python -m bench.outreach latency --pending {pending} "
        f"--due {due} --window {window:g}`: the service's scheduler in-process, "
        f"{due:,} SMS tasks due evenly over {window:g} s, the gateway in a process of its "
        "own.\n\n"
        "| delivered | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n"
        f"| {len(latencies)}/{due} | {statistics.median(latencies) * 1000:.0f} | "
        f"{p99 * 1000:.0f} | {latencies[-1] * 1000:.0f} |\n"
    )


async def seed_customers(url: str, count: int) -> None:
    """Customers as events would have left them: a birthday each (a tenth lunar), a third
    with a contact's birthday, half with a purchase cycle, tiers A 5%, B 15%, else C."""
    rng = random.Random(7)
    conn = await asyncpg.connect(pg_dsn(url))
    now = dt.datetime.now(dt.UTC)
    try:
        for start in range(0, count, 100_000):
            recipients, cycles = [], []
            for _ in range(min(100_000, count - start)):
                customer = uuid.uuid4()
                born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20_000))
                contacts = (
                    [
                        {
                            "id": "c1",
                            "name": "Li",
                            "birthday": (born + dt.timedelta(days=400)).isoformat(),
                        }
                    ]
                    if rng.random() < 0.3
                    else []
                )
                draw = rng.random()
                tier = "A" if draw < 0.05 else "B" if draw < 0.2 else "C"
                recipients.append(
                    (
                        customer,
                        "Asia/Shanghai",
                        born,
                        "lunar" if rng.random() < 0.1 else None,
                        "[]",
                        json.dumps(contacts),
                        '{"sms": "granted"}',
                        "mia",
                        tier,
                        "{}",
                    )
                )
                if rng.random() < 0.5:
                    last = now - dt.timedelta(days=rng.uniform(0, 20))
                    cycles.append((customer, "formula", 4, last - dt.timedelta(days=60), last))
            await conn.copy_records_to_table(
                "recipients",
                columns=[
                    "customer_id",
                    "timezone",
                    "birthday",
                    "birthday_calendar",
                    "key_dates",
                    "contacts",
                    "consent",
                    "account_manager",
                    "tier",
                    "field_times",
                ],
                records=recipients,
            )
            await conn.copy_records_to_table(
                "purchase_cycles",
                columns=["customer_id", "category", "purchases", "first_at", "last_at"],
                records=cycles,
            )
        await conn.execute("ANALYZE recipients; ANALYZE purchase_cycles")
    finally:
        await conn.close()


async def bench_planning(customers: int) -> None:
    url = await new_database("postgresql", "outreach_planning", Path(tempfile.mkdtemp()))
    try:
        await migrate(url, MIGRATIONS)
        began = time.perf_counter()
        await seed_customers(url, customers)
        seeded = time.perf_counter() - began
        settings = OutreachSettings(
            database_url=url, api_keys=KEYS, log_json=False, run_background=False
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            began = time.perf_counter()
            read = 0
            after = None
            while True:  # the baseline: read every customer, plan nothing
                async with runtime.sessions() as session:
                    batch = await repo.recipients.planning_facts(
                        session, after=after, limit=PLANNING_BATCH
                    )
                    read += len(batch)
                if len(batch) < PLANNING_BATCH:
                    break
                after = batch[-1][0]
            reading = time.perf_counter() - began
            began = time.perf_counter()
            created = await plan_everyone(runtime)
            planning = time.perf_counter() - began
            began = time.perf_counter()
            again = await plan_everyone(runtime)
            replanning = time.perf_counter() - began
            async with runtime.sessions() as session, session.begin():
                await session.execute(text("TRUNCATE tasks, outbox"))
            processes = settings.planning_processes
            settings.planning_processes = 1  # the same-run baseline: all in one process
            began = time.perf_counter()
            alone = await plan_everyone(runtime)
            planning_alone = time.perf_counter() - began
            settings.planning_processes = processes
        conn = await asyncpg.connect(pg_dsn(url))
        kinds = await conn.fetch(
            "SELECT kind, count(*) AS n FROM tasks GROUP BY kind ORDER BY 2 DESC"
        )
        events = await conn.fetchval("SELECT count(*) FROM outbox")
        await conn.close()
    finally:
        await drop_database(url)
    per_kind = ", ".join(f"{row['kind']} {row['n']:,}" for row in kinds)
    append_results(
        f"## Outreach: planning a year of contacts for {customers:,} customers "
        f"({dt.date.today()}, postgresql)\n\n"
        f"Machine: {machine()}. `python -m bench.outreach planning --customers {customers}` "
        f"(seeded by COPY in {seeded:.0f} s). The scheduled planner's own code "
        f"(`plan_everyone`: batches of {PLANNING_BATCH:,} customers, each read in four "
        "queries; each customer's next date of every kind of contact worked out by "
        "`plan_customer`, and those due within the "
        f"{outreach_service.planning_window.days}-day planning window written as tasks by "
        "COPY with their `outreach.scheduled` events).\n\n"
        "| run | seconds | tasks created | customers/s |\n|---|---|---|---|\n"
        f"| first planning | {planning:.1f} | {created:,} | {customers / planning:,.0f} |\n"
        f"| planning again (nothing new) | {replanning:.1f} | {again:,} | "
        f"{customers / replanning:,.0f} |\n"
        f"| baseline: first planning in one process | {planning_alone:.1f} | {alone:,} | "
        f"{customers / planning_alone:,.0f} ({planning_alone / planning:.1f}x the time) |\n"
        f"| baseline: reading the customers alone | {reading:.1f} | - | "
        f"{read / reading:,.0f} |\n\n"
        f"Tasks: {per_kind}; outbox rows: {events:,}. Planned by "
        f"{settings.planning_processes} processes (`CRM_OUTREACH_PLANNING_PROCESSES`), each "
        f"a range of customer ids; peak RSS of one: {peak_rss_mib(children=True):.0f} MiB.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    dispatch = sub.add_parser("dispatch")
    dispatch.add_argument("--tasks", type=int, default=20_000)
    dispatch.add_argument("--replicas", type=int, default=2)
    dispatch.add_argument("--batch", type=int, default=1)
    latency = sub.add_parser("latency")
    latency.add_argument("--pending", type=int, default=100_000)
    latency.add_argument("--due", type=int, default=1_000)
    latency.add_argument("--window", type=float, default=20.0)
    planning = sub.add_parser("planning")
    planning.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.what == "dispatch":
        asyncio.run(bench_dispatch(args.tasks, args.replicas, args.batch))
    elif args.what == "latency":
        asyncio.run(bench_latency(args.pending, args.due, args.window))
    else:
        asyncio.run(bench_planning(args.customers))


if __name__ == "__main__":
    main()
