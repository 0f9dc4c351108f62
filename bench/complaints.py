"""Complaints benchmarks: SLA timers under load, and statistics over a million complaints.

    python -m bench.complaints timers [--open 100000 --due 1000 --backend postgresql]
    python -m bench.complaints stats  [--closed 1000000]

`timers` seeds open complaints whose clocks run (their warnings minutes ahead) and a set
whose respond deadline falls in the next seconds, runs the service (timer, relay) on the
embedded broker, and measures deadline -> `complaint.escalated` read from Kafka. The
baseline, in the same run, is a bare asyncio timer per deadline producing straight to
Kafka (no database). `stats` seeds closed complaints by COPY on PostgreSQL and times
`GET /v1/complaints/stats`, beside a `count(*)` over the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text, true

from bench.common import ROOT, append_results, drop_database, machine, new_database
from services.complaints.app import create_app
from services.complaints.histogram import DURATION_COLUMNS, bucket_of
from services.complaints.models import Complaint, ComplaintEntry, SlaPolicy
from services.complaints.repository import refresh_figures
from services.complaints.settings import ComplaintsSettings
from shared.broker import EmbeddedBroker
from shared.db import bulk_insert, create_engine, migrate, session_factory
from shared.topics import ensure_platform_topics

MIGRATIONS = ROOT / "services" / "complaints" / "migrations"
KEY = "bench-admin-key-0123456789abcdef"
KEYS = {KEY: {"roles": ["admin"], "user": "bench"}}
POLICY = {
    "targets": [
        {"severity": s, "tier": "*", "respond_minutes": 60, "resolve_minutes": 480}
        for s in ("minor", "major", "critical")
    ],
    "escalation": [{"name": "team lead", "assign_to": "tina"}],
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def complaint_row(opened: dt.datetime, *, done: list[str], **values: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4(),
        "customer_id": uuid.uuid4(),
        "channel": "phone",
        "category": "delivery",
        "description": "late",
        "severity": random.choice(["minor", "major", "critical"]),
        "tier": random.choice(["A", "B", "C", None]),
        "status": "received",
        "paused_from": None,
        "owner": f"agent{random.randrange(50)}",
        "received_by": "agent",
        "assignee": "agent",
        "remedy": None,
        "remedy_by": None,
        "customer_told": None,
        "satisfaction": None,
        "escalation_level": 0,
        "reopen_count": 0,
        "opened_at": opened,
        "updated_at": opened,
        "closed_at": None,
        "version": 1,
        "respond_by": opened + dt.timedelta(minutes=60),
        "resolve_by": opened + dt.timedelta(minutes=480),
        "responded_at": None,
        "respond_breached": False,
        "resolve_breached": False,
        "alerts_done": done,
        "next_check_at": None,
        "respond_business_s": None,
        "respond_wall_s": None,
        "resolve_business_s": None,
        "resolve_wall_s": None,
        "met_sla": None,
        "returned_at": None,
        **{f"{name[:-2]}_bucket": None for name in DURATION_COLUMNS},
    }
    row.update(values)
    return row


async def seed_open(
    url: str, count: int, *, due_within_s: float | None = None
) -> dict[str, dt.datetime]:
    """`count` open complaints: with `due_within_s`, their respond deadline falls in that
    many seconds from now (their warning already acted on); otherwise their clocks run
    with the next alert minutes ahead. Returns the deadlines of the due ones."""
    engine = create_engine(url)
    now = dt.datetime.now(dt.UTC)
    deadlines: dict[str, dt.datetime] = {}
    try:
        async with session_factory(engine)() as session, session.begin():
            for start in range(0, count, 10_000):
                rows, entries = [], []
                for _ in range(start, min(start + 10_000, count)):
                    if due_within_s is None:
                        opened = now - dt.timedelta(minutes=random.uniform(0, 40))
                        row = complaint_row(
                            opened, done=[], next_check_at=opened + dt.timedelta(minutes=48)
                        )
                    else:
                        deadline = now + dt.timedelta(seconds=2 + random.uniform(0, due_within_s))
                        opened = deadline - dt.timedelta(minutes=60)
                        row = complaint_row(
                            opened, done=["respond:warning"], next_check_at=deadline
                        )
                        deadlines[str(row["id"])] = deadline
                    rows.append(row)
                    entries.append(
                        {
                            "complaint_id": row["id"],
                            "at": opened,
                            "actor": "agent",
                            "action": "opened",
                            "from_status": None,
                            "to_status": "received",
                            "note": None,
                            "details": {},
                        }
                    )
                await bulk_insert(session, Complaint.__table__, rows)
                await bulk_insert(session, ComplaintEntry.__table__, entries)
    finally:
        await engine.dispose()
    return deadlines


async def seed_policy(url: str) -> None:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            session.add(
                SlaPolicy(
                    version=1,
                    document=POLICY,
                    created_at=dt.datetime.now(dt.UTC),
                    created_by="bench",
                )
            )
    finally:
        await engine.dispose()


async def arrivals(
    broker: EmbeddedBroker, topic: str, expected: int, timeout_s: float
) -> dict[str, float]:
    """complaint_id -> wall time the escalation was read from Kafka."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    seen: dict[str, float] = {}
    deadline = time.time() + timeout_s
    try:
        while len(seen) < expected and time.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            stamp = time.time()
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)
                    seen.setdefault(event["data"]["complaint_id"], stamp)
    finally:
        await consumer.stop()
    return seen


async def baseline_timers(
    broker: EmbeddedBroker, topic: str, deadlines: list[float]
) -> list[float]:
    """A bare asyncio timer per deadline producing to Kafka: the floor of the latency."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()

    async def fire(index: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        await producer.send_and_wait(
            topic, json.dumps({"data": {"complaint_id": str(index)}}).encode()
        )

    reader = asyncio.create_task(arrivals(broker, topic, len(deadlines), 120))
    await asyncio.gather(*(fire(i, at) for i, at in enumerate(deadlines)))
    seen = await reader
    await producer.stop()
    return [seen[str(i)] - at for i, at in enumerate(deadlines) if str(i) in seen]


async def bench_timers(open_count: int, due: int, window_s: float, backend: str) -> None:
    broker = EmbeddedBroker()
    broker.start()
    folder = Path(tempfile.mkdtemp())
    url = await new_database(backend, "complaints_timers", folder)
    try:
        await migrate(url, MIGRATIONS)
        await seed_policy(url)
        started = time.perf_counter()
        await seed_open(url, open_count)
        seeded_s = time.perf_counter() - started
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        settings = ComplaintsSettings(
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            kafka_topic_prefix=prefix,
            api_keys=KEYS,
            log_json=False,
            relay_poll_interval_s=0.05,
        )
        await ensure_platform_topics(settings)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            # Deadlines from now on, with the service (timer, relay, consumer) running.
            deadlines = await seed_open(url, due, due_within_s=window_s)
            seen = await arrivals(broker, prefix + "complaint.escalated", due, window_s + 60)
        latencies = [seen[cid] - at.timestamp() for cid, at in deadlines.items() if cid in seen]
        base_deadlines = [time.time() + 3 + random.uniform(0, window_s) for _ in range(due)]
        base = await baseline_timers(broker, prefix + "baseline", base_deadlines)
    finally:
        await drop_database(url)
        broker.stop()
    ours = (statistics.median(latencies), percentile(latencies, 0.99), max(latencies))
    floor = (statistics.median(base), percentile(base, 0.99), max(base))
    append_results(
        f"## Complaints: SLA deadline -> complaint.escalated on Kafka "
        f"({dt.date.today()}, {backend})\n\n"
        f"Machine: {machine()}; embedded Tansu broker; the service in-process (timer, relay). "
        f"`python -m bench.complaints timers --open {open_count} --due {due} "
        f"--window {window_s:g} --backend {backend}`: {open_count:,} open complaints with "
        f"running clocks (seeded in {seeded_s:.0f} s), plus {due:,} whose respond deadline "
        f"falls within {window_s:g} s.\n\n"
        "| | escalations read | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n"
        f"| timer -> DB -> outbox -> relay -> Kafka | {len(latencies)}/{due} | "
        f"{ours[0] * 1000:.0f} | {ours[1] * 1000:.0f} | {ours[2] * 1000:.0f} |\n"
        f"| baseline: asyncio timer -> Kafka | {len(base)}/{due} | "
        f"{floor[0] * 1000:.0f} | {floor[1] * 1000:.0f} | {floor[2] * 1000:.0f} |\n"
    )


async def seed_closed(url: str, count: int) -> None:
    """Closed complaints by COPY (PostgreSQL), their figures drawn at random."""
    names = [column.name for column in Complaint.__table__.columns]
    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for start in range(0, count, 100_000):
            records = []
            for _ in range(min(100_000, count - start)):
                opened = now - dt.timedelta(days=random.uniform(0, 720))
                wall = random.expovariate(1 / 40) * 3600
                row = complaint_row(
                    opened,
                    done=[],
                    status="confirmed",
                    closed_at=opened + dt.timedelta(seconds=wall),
                    satisfaction=random.randint(1, 5),
                    reopen_count=int(random.random() < 0.1),
                    respond_business_s=random.expovariate(1 / 7200),
                    respond_wall_s=random.expovariate(1 / 9000),
                    resolve_business_s=wall * 0.3,
                    resolve_wall_s=wall,
                    met_sla=random.random() < 0.8,
                    returned_at=opened + dt.timedelta(days=10) if random.random() < 0.5 else None,
                )
                row["alerts_done"] = "[]"
                for name in DURATION_COLUMNS:
                    row[f"{name[:-2]}_bucket"] = bucket_of(row[name])
                records.append(tuple(row[name] for name in names))
            await conn.copy_records_to_table("complaints", records=records, columns=names)
    finally:
        await conn.close()
    engine = create_engine(url)  # written behind the service's back: its figures too
    async with engine.begin() as conn:
        await conn.execute(refresh_figures("postgresql", true()))
        await conn.execute(text("ANALYZE complaints"))
        await conn.execute(text("ANALYZE complaint_figures"))
    await engine.dispose()


async def bench_stats(closed: int, repeats: int) -> None:
    folder = Path(tempfile.mkdtemp())
    url = await new_database("postgresql", "complaints_stats", folder)
    try:
        await migrate(url, MIGRATIONS)
        started = time.perf_counter()
        await seed_closed(url, closed)
        seeded_s = time.perf_counter() - started
        settings = ComplaintsSettings(
            database_url=url, api_keys=KEYS, log_json=False, run_background=False
        )
        app = create_app(settings)
        timings: dict[str, list[float]] = {
            "stats": [],
            "by severity": [],
            "by owner, one year": [],
            "count(*)": [],
        }
        year_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                engine = create_engine(url)
                for _ in range(repeats):
                    for name, path in (
                        ("stats", "/v1/complaints/stats"),
                        ("by severity", "/v1/complaints/stats?group_by=severity"),
                        (
                            "by owner, one year",
                            f"/v1/complaints/stats?group_by=owner&from={year_ago}",
                        ),
                    ):
                        begin = time.perf_counter()
                        response = await client.get(path, headers=headers)
                        timings[name].append(time.perf_counter() - begin)
                        assert response.status_code == 200, response.text
                    begin = time.perf_counter()
                    async with engine.connect() as conn:
                        await conn.execute(text("SELECT count(*) FROM complaints"))
                    timings["count(*)"].append(time.perf_counter() - begin)
                await engine.dispose()
    finally:
        await drop_database(url)
    rows = "".join(
        f"| {name} | {statistics.median(values) * 1000:.0f} | {max(values) * 1000:.0f} |\n"
        for name, values in timings.items()
    )
    ratio = statistics.median(timings["stats"]) / statistics.median(timings["count(*)"])
    append_results(
        f"## Complaints: GET /v1/complaints/stats over {closed:,} closed complaints "
        f"({dt.date.today()}, postgresql)\n\n"
        f"Machine: {machine()}. `python -m bench.complaints stats --closed {closed}` "
        f"(seeded by COPY in {seeded_s:.0f} s); {repeats} runs each, over HTTP in-process.\n\n"
        "| query | median ms | max ms |\n|---|---|---|\n"
        f"{rows}\nRatio of the stats request to a bare count(*) over the table: {ratio:.1f}x.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    timers = sub.add_parser("timers")
    timers.add_argument("--open", type=int, default=100_000)
    timers.add_argument("--due", type=int, default=1_000)
    timers.add_argument("--window", type=float, default=20.0)
    timers.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    stats = sub.add_parser("stats")
    stats.add_argument("--closed", type=int, default=1_000_000)
    stats.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.what == "timers":
        asyncio.run(bench_timers(args.open, args.due, args.window, args.backend))
    else:
        asyncio.run(bench_stats(args.closed, args.repeats))


if __name__ == "__main__":
    main()
