"""Benchmark the foundation's slice: N purchases over HTTP into profile, until tiering has
applied them, beside a baseline (a bare FastAPI insert) on the same database, same run.

    python -m bench.slice [--purchases 2000] [--concurrency 16] [--backends sqlite,postgresql]

Writes a section to bench/RESULTS.md. Everything runs on this machine: the embedded
broker, the services as real uvicorn processes, the client in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import ROOT, append_results, drop_database, machine, new_database
from shared.broker import EmbeddedBroker, free_port, port_open
from shared.db import create_engine, migrate

KEY = "bench-admin-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def profile_and_tiering(
    backend: str, folder: Path, bootstrap: str
) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
    """Migrated databases and free ports for profile and tiering, and the environment that
    points `crm serve` at them and the broker: (databases, ports, environment). Other
    `CRM_*` settings in this process's environment reach the services (to measure one,
    e.g. `CRM_PROFILE_RELAY_BATCH_SIZE=500`); keys, broker, databases and ports are the
    benchmark's own."""
    databases = {
        service: await new_database(backend, service, folder) for service in ("profile", "tiering")
    }
    for service, url in databases.items():
        await migrate(url, ROOT / "services" / service / "migrations")
    ports = {service: free_port() for service in databases}
    env = dict(os.environ)
    env.update(
        {
            "CRM_API_KEYS": json.dumps({KEY: {"roles": ["admin"], "user": "bench"}}),
            "CRM_KAFKA_BOOTSTRAP": bootstrap,
            "CRM_LOG_LEVEL": "WARNING",
        }
    )
    for service, url in databases.items():
        env[f"CRM_{service.upper()}_DATABASE_URL"] = url
        env[f"CRM_{service.upper()}_PORT"] = str(ports[service])
    return databases, ports, env


async def tear_down(
    processes: list[subprocess.Popen[bytes]], broker: EmbeddedBroker, databases: list[str]
) -> None:
    """Stop the services, then the broker, and drop their databases."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(15)
    broker.stop()
    for url in databases:
        await drop_database(url)


def start(args: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{args} did not start; see {log}")
        time.sleep(0.1)
    return process


async def load(
    requests: list[tuple[str, dict[str, Any]]], concurrency: int
) -> tuple[float, list[float]]:
    """POST every (url, body) with `concurrency` requests in flight; return (seconds, latencies)."""
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=HEADERS) as client:

        async def worker() -> None:
            while not queue.empty():
                url, body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def run_backend(
    backend: str, purchases: int, concurrency: int, folder: Path
) -> dict[str, Any]:
    broker = EmbeddedBroker()
    broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    databases: list[str] = []
    try:
        service_dbs, ports, env = await profile_and_tiering(backend, folder, broker.bootstrap)
        databases += service_dbs.values()
        profile_db, tiering_db = service_dbs["profile"], service_dbs["tiering"]
        baseline_db = await new_database(backend, "baseline", folder)
        databases.append(baseline_db)
        ports["baseline"] = free_port()
        env["BENCH_DATABASE_URL"] = baseline_db
        python = sys.executable
        processes.append(
            start(
                [python, "-m", "shared.cli", "serve", "profile"],
                env,
                ports["profile"],
                folder / "profile.log",
            )
        )
        processes.append(
            start(
                [python, "-m", "shared.cli", "serve", "tiering"],
                env,
                ports["tiering"],
                folder / "tiering.log",
            )
        )
        processes.append(
            start(
                [
                    python,
                    "-m",
                    "uvicorn",
                    "bench.baseline_app:create_app",
                    "--factory",
                    "--port",
                    str(ports["baseline"]),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env,
                ports["baseline"],
                folder / "baseline.log",
            )
        )

        profile = f"http://127.0.0.1:{ports['profile']}"
        async with httpx.AsyncClient(headers=HEADERS, timeout=30) as client:
            while (await client.get(f"{profile}/readyz")).status_code != 200:
                await asyncio.sleep(0.2)
            customers = [
                (
                    await client.post(
                        f"{profile}/v1/customers", json={"name": f"Bench {n}", "kind": "company"}
                    )
                ).json()["id"]
                for n in range(50)
            ]
        bodies = [
            {
                "amount": f"{n % 97 + 1}.50",
                "currency": "CNY",
                "purchased_at": "2026-11-01T08:00:00Z",
            }
            for n in range(purchases)
        ]

        # Baseline first, on the same database backend, with the same load shape.
        baseline_url = f"http://127.0.0.1:{ports['baseline']}/rows"
        baseline = [(f"{baseline_url}/{customers[n % 50]}", b) for n, b in enumerate(bodies)]
        await load(baseline[:200], concurrency)  # warm-up
        base_seconds, base_latencies = await load(baseline, concurrency)

        # The slice: the same bodies as purchases, spread over the customers.
        requests = [
            (f"{profile}/v1/customers/{customers[n % 50]}/purchases", body)
            for n, body in enumerate(bodies)
        ]
        load_started = time.perf_counter()
        slice_seconds, slice_latencies = await load(requests, concurrency)
        tiering_engine = create_engine(tiering_db)
        while True:
            async with tiering_engine.connect() as conn:
                done = (
                    await conn.execute(
                        sa.text("SELECT count(*) FROM inbox WHERE event_type='purchase.recorded'")
                    )
                ).scalar()
            if done >= purchases:
                break
            await asyncio.sleep(0.05)
        applied_seconds = time.perf_counter() - load_started

        # Per event: from the outbox row's creation (in profile's transaction) to the
        # inbox row's creation (in tiering's transaction).
        profile_engine = create_engine(profile_db)
        async with profile_engine.connect() as conn:
            created = dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT event_id, created_at FROM outbox "
                            "WHERE event_type='purchase.recorded'"
                        )
                    )
                ).all()
            )
        async with tiering_engine.connect() as conn:
            handled = dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT event_id, handled_at FROM inbox "
                            "WHERE event_type='purchase.recorded'"
                        )
                    )
                ).all()
            )
        await profile_engine.dispose()
        await tiering_engine.dispose()

        def as_time(value: Any) -> dt.datetime:
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value)
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

        lags = [
            (as_time(handled[key]) - as_time(created[key])).total_seconds()
            for key in created
            if key in handled
        ]
        return {
            "backend": backend,
            "purchases": purchases,
            "concurrency": concurrency,
            "baseline_rate": purchases / base_seconds,
            "baseline_p50_ms": statistics.median(base_latencies) * 1000,
            "baseline_p99_ms": percentile(base_latencies, 0.99) * 1000,
            "slice_rate": purchases / slice_seconds,
            "slice_p50_ms": statistics.median(slice_latencies) * 1000,
            "slice_p99_ms": percentile(slice_latencies, 0.99) * 1000,
            "applied_rate": purchases / applied_seconds,
            "lag_p50_ms": statistics.median(lags) * 1000,
            "lag_p99_ms": percentile(lags, 0.99) * 1000,
        }
    finally:
        await tear_down(processes, broker, databases)


def write_results(results: list[dict[str, Any]]) -> str:
    lines = [
        f"## Slice: purchase over HTTP -> outbox -> Kafka -> tiering ({dt.date.today()})",
        "",
        f"Machine: {machine()}; embedded Tansu broker; services as uvicorn processes (1 worker "
        "each); client in one process on the same machine. `python -m bench.slice`.",
        "",
        "| backend | N | conc. | baseline insert req/s | baseline p50 / p99 ms "
        "| purchase POST req/s | POST p50 / p99 ms | ratio to baseline "
        "| applied in tiering /s | event lag p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['purchases']} | {r['concurrency']} | {r['baseline_rate']:.0f} "
            f"| {r['baseline_p50_ms']:.1f} / {r['baseline_p99_ms']:.1f} | {r['slice_rate']:.0f} "
            f"| {r['slice_p50_ms']:.1f} / {r['slice_p99_ms']:.1f} "
            f"| {r['slice_rate'] / r['baseline_rate']:.2f} | {r['applied_rate']:.0f} "
            f"| {r['lag_p50_ms']:.1f} / {r['lag_p99_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--purchases", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            results.append(
                asyncio.run(run_backend(backend, args.purchases, args.concurrency, Path(folder)))
            )
            print(json.dumps(results[-1], indent=1))
    section = write_results(results)
    append_results(section)
    print(section)


if __name__ == "__main__":
    main()
