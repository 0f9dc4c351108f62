"""A real local HTTP server standing in for the SMS/email provider (the outside world):
one path answers, one times out, one fails then succeeds, one refuses, and a batch
endpoint answers per message; it checks the signature and counts what it sent by
idempotency key, as a real gateway would."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.outreach.channels import SIGNATURE_HEADER, sign

SECRET = "provider-shared-secret"


@dataclass
class FakeProvider:
    """What the gateway saw: every request, and the messages it sent (once per key)."""

    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    failed_once: set[str] = field(default_factory=set)
    batches: int = 0

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        key = request.headers.get("Idempotency-Key", "")
        if request.headers.get(SIGNATURE_HEADER) != sign(SECRET, body):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        mode = request.path_params["mode"]
        self.requests.append((key, await request.json()))
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "flaky" and key not in self.failed_once:
            self.failed_once.add(key)
            return JSONResponse({"error": "try later"}, status_code=503)
        if mode == "refuse":
            return JSONResponse({"error": "unknown number"}, status_code=422)
        if key not in self.sent:  # a retried request is recognised, not sent again
            self.sent[key] += 1
        return JSONResponse({"message_id": f"m-{key}", "duplicate": len(self.requests) > 1})

    async def handle_batch(self, request: Request) -> JSONResponse:
        """The batch endpoint: `ok` sends all; `mixed` refuses the first message and leaves
        the second out of its first answer; `down` answers 503 for the whole batch."""
        body = await request.body()
        if request.headers.get(SIGNATURE_HEADER) != sign(SECRET, body):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        mode = request.path_params["mode"]
        messages = (await request.json())["messages"]
        self.batches += 1
        if mode == "down":
            return JSONResponse({"error": "try later"}, status_code=503)
        results = []
        for index, message in enumerate(messages):
            key = message["idempotency_key"]
            self.requests.append((key, message))
            if mode == "mixed" and index == 0 and key not in self.sent:
                results.append({"idempotency_key": key, "status": "failed", "error": "barred"})
                continue
            if mode == "mixed" and index == 1 and key not in self.failed_once:
                self.failed_once.add(key)  # accepted, but the answer forgets it
                self.sent[key] += 1
                continue
            if key not in self.sent:
                self.sent[key] += 1
            results.append({"idempotency_key": key, "status": "sent", "message_id": f"m-{key}"})
        return JSONResponse({"results": results})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    app = Starlette(
        routes=[
            Route("/batch/{mode}", fake.handle_batch, methods=["POST"]),
            Route("/{mode}", fake.handle, methods=["POST"]),
        ]
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    await task
