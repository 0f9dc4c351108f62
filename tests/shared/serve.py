"""Serve one service over real HTTP without the broker, on a fresh SQLite database in DIR
or on DATABASE_URL (migrated already), for tools that speak HTTP (e.g. schemathesis):
`python -m tests.shared.serve NAME PORT DIR [DATABASE_URL]`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn

from tests.shared.test_route_auth import _app

if __name__ == "__main__":
    name, port, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    database_url = sys.argv[4] if len(sys.argv) > 4 else None
    folder.mkdir(parents=True, exist_ok=True)
    app = asyncio.run(_app(name, folder, database_url))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
