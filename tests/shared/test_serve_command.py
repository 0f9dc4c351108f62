"""`crm serve` as the image runs it: a real process on a real port, behind a path prefix
(CRM_<SERVICE>_ROOT_PATH, what the Ingress strips), and `crm health` (the image's
HEALTHCHECK) telling whether it answers, or the service CRM_SERVICE names does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.broker import free_port

CRM = str(Path(sys.executable).parent / "crm")


def test_serve_behind_a_prefix_and_health(tmp_path: Path) -> None:
    port = free_port()
    environment = {
        **os.environ,
        "CRM_DEV_MODE": "true",
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_TIERING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tiering.db'}",
        "CRM_TIERING_PORT": str(port),
        "CRM_TIERING_ROOT_PATH": "/tiering",
        "CRM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody there: readiness says so
    }
    health = [CRM, "health", "tiering"]
    assert subprocess.run(health, env=environment, capture_output=True).returncode == 1
    subprocess.run(
        [CRM, "migrate", "--service", "tiering"], env=environment, check=True, capture_output=True
    )
    server = subprocess.Popen(
        [CRM, "serve", "tiering"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(health, env=environment, capture_output=True).returncode != 0:
            assert server.poll() is None, "crm serve exited"
            assert time.monotonic() < deadline, "crm health never passed"
            time.sleep(0.5)
        # Named by CRM_SERVICE (as a container may be): that service, not any other.
        named = {**environment, "CRM_OUTREACH_PORT": str(free_port())}
        for name, answer in (("tiering", 0), ("outreach", 1)):
            asked = subprocess.run(
                [CRM, "health"], env={**named, "CRM_SERVICE": name}, capture_output=True
            )
            assert asked.returncode == answer, name
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=10)
        assert docs.status_code == 200
        assert "/tiering/openapi.json" in docs.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert subprocess.run(health, env=environment, capture_output=True).returncode == 1
