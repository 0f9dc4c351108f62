"""What every benchmark needs: a database to run on, the machine's name, the results file."""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from pathlib import Path

import asyncpg

from shared.observability import Metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def machine() -> str:
    """The machine, with how fast it runs plain Python: figures from machines of the same
    description have differed twofold, and only the speed tells them apart."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({_cpu_model()}), "
        f"Python {platform.python_version()} at {python_step_ns():.0f} ns a loop step"
    )


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "CPU unknown"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "CPU unknown"


def python_step_ns(steps: int = 2_000_000) -> float:
    """Nanoseconds per step of a plain Python loop adding integers (the best of three)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for step in range(steps):
            total += step
        best = min(best, time.perf_counter() - started)
    return best / steps * 1e9


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine has spent working since boot (the
    database and the broker as well as the benchmark), from /proc/stat: user, nice,
    system, irq and softirq time (not idle, I/O wait or time stolen by the host). 0.0
    where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def append_results(section: str) -> None:
    """Add a section to bench/RESULTS.md (made on first use) and print it."""
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    RESULTS.write_text(existing.rstrip() + "\n\n" + section)
    print(section)


async def new_database(backend: str, name: str, folder: Path) -> str:
    """The URL of a new, empty database: a SQLite file in `folder`, or a PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{folder / name}.db"
    database = f"bench_{name}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(database="postgres", **PG)
    await conn.execute(f'CREATE DATABASE "{database}"')
    await conn.close()
    return f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{database}"


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def drop_database(url: str) -> None:
    """Drop a database made by `new_database`: a PostgreSQL one, or a SQLite file with its
    WAL files."""
    if url.startswith("postgresql"):
        conn = await asyncpg.connect(database="postgres", **PG)
        await conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
        await conn.close()
    elif url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.split("///", 1)[1] + suffix).unlink(missing_ok=True)


def events_applied(metrics: Metrics) -> int:
    """Events a consumer has applied (not duplicates nor dead-lettered)."""
    return int(
        sum(
            sample.value
            for family in metrics.registry.collect()
            if family.name == "crm_events_consumed"
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels.get("outcome") == "applied"
        )
    )


def events_handled(metrics: Metrics) -> int:
    """Events a consumer has committed (applied, duplicate or dead-lettered)."""
    return int(
        sum(
            sample.value
            for family in metrics.registry.collect()
            if family.name == "crm_events_consumed"
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )


async def until_handled(metrics: Metrics, events: int) -> float:
    """Wait until a running consumer has committed `events` events (its own count, after
    each commit: counting the inbox every few milliseconds cost the database 10 µs an
    event); the seconds from the first one applied to the last."""
    first_seen = None
    while (done := events_handled(metrics)) < events:
        if done and first_seen is None:
            first_seen = time.perf_counter()
        await asyncio.sleep(0.02)
    finished = time.perf_counter()
    return finished - (first_seen or finished)


def peak_rss_mib(children: bool = False) -> float:
    """The peak resident memory of this process, or (`children`) the largest of the
    processes it has waited for."""
    import resource

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024
