"""Serve one service over real HTTP on a fresh SQLite database, without the broker (for
tools that speak HTTP, e.g. schemathesis): `python -m tests.shared.serve NAME PORT DIR`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn

from tests.shared.test_route_auth import _app

if __name__ == "__main__":
    name, port, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    app = asyncio.run(_app(name, folder))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
