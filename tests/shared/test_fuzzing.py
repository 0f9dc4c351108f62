"""schemathesis (all checks: server errors, status codes, content types and bodies as
documented, negative data rejected, stateful sequences) over each service's OpenAPI,
the services served over real HTTP, on SQLite and on PostgreSQL. Bounded examples and a
fixed seed keep it quick and repeatable; the four run side by side. A failure prints
schemathesis's own report, with the curl to reproduce it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.broker import free_port
from tests.conftest import ADMIN_KEY, DatabaseFactory
from tests.shared.test_route_auth import APPS

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = 10


def _serve(name: str, folder: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.shared.serve", name, str(port), str(folder), database_url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def _wait_until_up(server: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, f"{base} did not start"
        time.sleep(0.2)


def _schemathesis(base: str, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--exclude-path",
            "/readyz",  # the broker is not started here: readiness has its own tests
            "-H",
            f"Authorization: Bearer {ADMIN_KEY}",
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_schemathesis_finds_nothing_on_any_service(
    new_database: DatabaseFactory, tmp_path: Path
) -> None:
    databases = {name: await new_database(name) for name in sorted(APPS)}
    await asyncio.to_thread(_fuzz_all, databases, tmp_path)


def _fuzz_all(databases: dict[str, str], tmp_path: Path) -> None:
    servers = {name: _serve(name, tmp_path / name, url) for name, url in databases.items()}
    try:
        for server, base in servers.values():
            _wait_until_up(server, base)
        runs = {name: _schemathesis(base, tmp_path / name) for name, (_, base) in servers.items()}
        reports = {name: run.communicate(timeout=900)[0] for name, run in runs.items()}
        failed = {name: reports[name] for name, run in runs.items() if run.returncode != 0}
        assert not failed, "\n\n".join(
            f"===== {name}\n{report[-20000:]}" for name, report in failed.items()
        )
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=10)
