"""`crm up` as a person runs it: broker, migrations, four processes, /readyz, then SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.broker import free_port, port_open


def test_crm_up_serves_all_four_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("profile", "tiering", "outreach", "complaints")}
    broker_port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update({f"CRM_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "up",
            "--broker-port",
            str(broker_port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        keys_file = tmp_path / "data" / "api-keys.json"
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            if keys_file.exists() and all(
                httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=1).status_code == 200
                if port_open("127.0.0.1", p)
                else False
                for p in ports.values()
            ):
                ready = True
                break
            time.sleep(0.5)
        assert ready, process.stderr.read() if process.poll() is not None else "not ready"
        admin_key = next(iter(json.loads(keys_file.read_text())))
        headers = {"Authorization": f"Bearer {admin_key}"}
        for port in ports.values():
            assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
        profile = f"http://127.0.0.1:{ports['profile']}"
        customer = httpx.post(
            f"{profile}/v1/customers",
            json={"name": "Up", "kind": "person"},
            headers=headers,
            timeout=5,
        ).json()
        httpx.post(
            f"{profile}/v1/customers/{customer['id']}/purchases",
            json={"amount": "5.00", "currency": "CNY", "purchased_at": "2026-11-01T00:00:00Z"},
            headers=headers,
            timeout=5,
        ).raise_for_status()
        tier_url = f"http://127.0.0.1:{ports['tiering']}/v1/customers/{customer['id']}/tier"
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline and count != 1:
            response = httpx.get(tier_url, headers=headers, timeout=5)
            count = (
                response.json()["aggregates"]["purchase_count"]
                if response.status_code == 200
                else 0
            )
            time.sleep(0.2)
        assert count == 1
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert admin_key in out  # printed for the person who ran it
    assert "crm is up" in out and "/docs" in out
    assert "broker stopped" in err
    assert not any(port_open("127.0.0.1", p) for p in [*ports.values(), broker_port])


def _crm_up(tmp_path: Path, ports: dict[str, int], broker_port: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update({f"CRM_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up", "--broker-port", str(broker_port)],
        env={**env, "CRM_DATA_DIR": str(tmp_path / "data")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_crm_up_explains_a_taken_port_and_leaves_nothing_behind_when_killed(
    tmp_path: Path,
) -> None:
    ports = {name: free_port() for name in ("profile", "tiering", "outreach", "complaints")}
    broker_port = free_port()
    with socket.create_server(("127.0.0.1", ports["tiering"])):
        refused = _crm_up(tmp_path, ports, broker_port)
        _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert f"port {ports['tiering']} (tiering) is taken" in err
    assert "CRM_TIERING_PORT" in err
    assert not port_open("127.0.0.1", broker_port)

    process = _crm_up(tmp_path, ports, broker_port)
    try:
        deadline = time.monotonic() + 90
        while not all(port_open("127.0.0.1", p) for p in [*ports.values(), broker_port]):
            assert process.poll() is None and time.monotonic() < deadline, "not up"
            time.sleep(0.5)
    finally:
        process.kill()  # SIGKILL: nothing of crm up runs after this
        process.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(port_open("127.0.0.1", p) for p in [*ports.values(), broker_port]):
        assert time.monotonic() < deadline, "a service or the broker outlived crm up"
        time.sleep(0.2)
