"""Import to tiers current: a purchase CSV imported into profile over HTTP, then how long
until tiering has applied every purchase (each customer placed against the latest
ranking in the same transaction), with the services as real processes and the embedded
broker between them.

    python -m bench.import_to_tiers [--rows 100000] [--customers 10000] [--backend postgresql]

The customers are imported first and ranked once (`POST /v1/recompute`), as on an install
that has been running; then the purchases. Baseline of the same run: the import itself
(until profile answers). Appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import append_results, machine
from bench.slice import HEADERS, profile_and_tiering, start, tear_down
from shared.broker import EmbeddedBroker
from shared.db import create_engine


def write_files(folder: Path, rows: int, customers: int) -> tuple[bytes, bytes]:
    """Customers named by external ref; purchases spread over them and the past year."""
    people = ["external_ref,name,kind"] + [f"C{n},Customer {n},company" for n in range(customers)]
    today = dt.datetime.now(dt.UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    purchases = ["customer_ref,external_id,amount,currency,quantity,category,sku,purchased_at"]
    for n in range(rows):
        when = (today - dt.timedelta(days=n % 360)).strftime("%Y-%m-%dT%H:%M:%SZ")
        purchases.append(f"C{n % customers},P{n},{n % 997 + 1}.50,CNY,1,cat{n % 20},s,{when}")
    return ("\n".join(people) + "\n").encode(), ("\n".join(purchases) + "\n").encode()


async def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar() or 0)
    finally:
        await engine.dispose()


async def wait_for(url: str, sql: str, expected: int, timeout_s: float = 900) -> float:
    """Poll until the count reaches `expected`; the moment it did."""
    deadline = time.perf_counter() + timeout_s
    while (found := await count(url, sql)) < expected:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{found} of {expected}: {sql}")
        await asyncio.sleep(0.05)
    return time.perf_counter()


async def run(rows: int, customers: int, backend: str, folder: Path) -> dict[str, Any]:
    broker = EmbeddedBroker()
    broker.start()
    processes = []
    databases: list[str] = []
    try:
        service_dbs, ports, env = await profile_and_tiering(backend, folder, broker.bootstrap)
        databases += service_dbs.values()
        tiering_db = service_dbs["tiering"]
        for service in ("profile", "tiering"):
            processes.append(
                start(
                    [sys.executable, "-m", "shared.cli", "serve", service],
                    env,
                    ports[service],
                    folder / f"{service}.log",
                )
            )
        people, purchases = write_files(folder, rows, customers)
        profile = f"http://127.0.0.1:{ports['profile']}"
        tiering = f"http://127.0.0.1:{ports['tiering']}"
        csv = {**HEADERS, "content-type": "text/csv"}
        async with httpx.AsyncClient(timeout=600) as client:
            for url in (profile, tiering):
                while (await client.get(f"{url}/readyz")).status_code != 200:
                    await asyncio.sleep(0.2)
            imports = f"{profile}/v1/imports"
            people_began = time.perf_counter()
            answer = await client.post(f"{imports}/customers", content=people, headers=csv)
            assert answer.status_code == 200, answer.text
            people_answered = time.perf_counter()
            people_known = await wait_for(
                tiering_db, "SELECT count(*) FROM customer_aggregates WHERE known", customers
            )
            ranked = await client.post(f"{tiering}/v1/recompute", json={}, headers=HEADERS)
            assert ranked.status_code == 200, ranked.text
            began = time.perf_counter()
            answer = await client.post(f"{imports}/purchases", content=purchases, headers=csv)
            answered = time.perf_counter()
            assert answer.status_code == 200 and answer.json()["accepted"] == rows, answer.text
        applied = "SELECT count(*) FROM inbox WHERE event_type = 'purchase.recorded'"
        sent = (
            "SELECT count(*) FROM outbox WHERE event_type = 'purchase.recorded' "
            "AND published_at IS NOT NULL"
        )
        # Where the time after the answer goes: profile's relay publishing, or tiering.
        published, current = await asyncio.gather(
            wait_for(service_dbs["profile"], sent, rows), wait_for(tiering_db, applied, rows)
        )
        tiered = await count(
            tiering_db, "SELECT count(*) FROM customer_scores WHERE tier IS NOT NULL"
        )
        return {
            "backend": backend,
            "rows": rows,
            "customers": customers,
            "customer_import_s": people_answered - people_began,
            "customers_known_after_answer_s": people_known - people_answered,
            "import_s": answered - began,
            "published_after_answer_s": published - answered,
            "current_after_answer_s": current - answered,
            "current_s": current - began,
            "tiered": tiered,
        }
    finally:
        await tear_down(processes, broker, databases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--backend", default="postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run(args.rows, args.customers, args.backend, Path(folder)))
    print(json.dumps(result, indent=1))
    append_results(
        f"## Import to tiers current ({dt.date.today()}, {args.backend})\n\n"
        f"Machine: {machine()}. `python -m bench.import_to_tiers --rows {args.rows} "
        f"--customers {args.customers} --backend {args.backend}`: profile and tiering as "
        "uvicorn processes, the embedded broker; the customers imported and ranked first, "
        f"then {args.rows:,} purchases over the past year imported over HTTP (`text/csv`). "
        "Tiers are current when tiering has applied every purchase (the customers it touches "
        "are placed in the same transaction).\n\n"
        "| import answered (baseline) | all published after the answer "
        "| tiers current after the answer | from the start "
        "| customers with a tier | the customers' import answered "
        "| tiering knew them all after that answer |\n|---|---|---|---|---|---|---|\n"
        f"| {result['import_s']:.1f} s | {result['published_after_answer_s']:.1f} s "
        f"| {result['current_after_answer_s']:.1f} s "
        f"| {result['current_s']:.1f} s ({args.rows / result['current_s']:,.0f} purchases/s) "
        f"| {result['tiered']:,} of {result['customers']:,} "
        f"| {result['customer_import_s']:.1f} s "
        f"| {result['customers_known_after_answer_s']:.1f} s |\n"
    )


if __name__ == "__main__":
    main()
