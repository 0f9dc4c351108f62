"""Benchmark the purchase CSV import: 1,000,000 rows (by default) into profile on PostgreSQL.

    python -m bench.imports [--rows 1000000] [--backend postgresql]

Generates the file on disk, imports it in-process as `crm import purchases` does (each row
validated, stored and given its outbox event), and reports rows/s and peak memory (RSS)
beside the baseline of the same run: parsing the same file with the csv module alone.
Appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.common import ROOT, append_results, drop_database, machine, new_database, peak_rss_mib
from services.profile.imports import IMPORTERS
from shared.db import create_engine, migrate, session_factory

CUSTOMERS = 10_000


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    customers = folder / "customers.csv"
    with customers.open("w") as out:
        out.write("external_ref,name,kind\n")
        for n in range(CUSTOMERS):
            out.write(f"C{n},Customer {n},company\n")
    purchases = folder / "purchases.csv"
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with purchases.open("w") as out:
        out.write("customer_ref,external_id,amount,currency,quantity,category,sku,purchased_at\n")
        for n in range(rows):
            when = (start + dt.timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(
                f"C{n % CUSTOMERS},P{n},{n % 997 + 1}.50,CNY,{n % 5 + 1},"
                f"cat{n % 20},sku{n % 300},{when}\n"
            )
    return customers, purchases


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            yield chunk


async def run(rows: int, backend: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        customers, purchases = write_files(folder, rows)
        baseline_started = time.perf_counter()
        with purchases.open(newline="") as stream:
            parsed = sum(1 for _ in csv.reader(stream)) - 1
        baseline_seconds = time.perf_counter() - baseline_started
        assert parsed == rows
        rss_before = peak_rss_mib()

        url = await new_database(backend, "import", folder)
        await migrate(url, ROOT / "services/profile/migrations")
        engine = create_engine(url)
        sessions = session_factory(engine)
        await IMPORTERS["customers"].run(
            sessions, chunks(customers), actor="bench", base_currency="CNY"
        )
        started = time.perf_counter()
        report = await IMPORTERS["purchases"].run(
            sessions, chunks(purchases), actor="bench", base_currency="CNY"
        )
        seconds = time.perf_counter() - started
        await engine.dispose()
        await drop_database(url)
        assert report.accepted == rows, report
        return {
            "rows": rows,
            "seconds": seconds,
            "rate": rows / seconds,
            "baseline_rate": rows / baseline_seconds,
            "file_mib": purchases.stat().st_size / 2**20,
            "rss_before_mib": rss_before,
            "peak_rss_mib": peak_rss_mib(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", default="postgresql")
    args = parser.parse_args()
    result = asyncio.run(run(args.rows, args.backend))
    print(result)
    section = (
        f"## Purchase CSV import ({dt.date.today()}, {args.backend})\n\n"
        f"Machine: {machine()}. `python -m bench.imports --rows {args.rows} "
        f"--backend {args.backend}`: {result['file_mib']:.0f} MiB file, "
        f"{CUSTOMERS} customers named by external_ref; every row validated, stored, and given "
        "its `purchase.recorded` outbox row, committed in batches of 2,000.\n\n"
        "| rows | seconds | rows/s | baseline: csv.reader alone, rows/s | ratio | "
        "peak RSS MiB (before import) |\n|---|---|---|---|---|---|\n"
        f"| {result['rows']} | {result['seconds']:.1f} | {result['rate']:.0f} "
        f"| {result['baseline_rate']:.0f} | {result['rate'] / result['baseline_rate']:.3f} "
        f"| {result['peak_rss_mib']:.0f} ({result['rss_before_mib']:.0f}) |\n"
    )
    append_results(section)


if __name__ == "__main__":
    main()
