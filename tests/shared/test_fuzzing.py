"""schemathesis (all checks: server errors, status codes, content types and bodies as
documented, negative data rejected, stateful sequences) over each service's OpenAPI,
the service served over real HTTP. Bounded examples and a fixed seed keep it quick and
repeatable; a failure prints schemathesis's own report with the curl to reproduce it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.broker import free_port
from tests.conftest import ADMIN_KEY
from tests.shared.test_route_auth import APPS

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = 10


@pytest.mark.parametrize("name", sorted(APPS))
def test_schemathesis_finds_nothing(name: str, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.shared.serve", name, str(port), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        run = subprocess.run(
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
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    finally:
        server.terminate()
        server.wait(timeout=10)
