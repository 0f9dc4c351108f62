"""A stand-in SMS gateway for benchmarks, run as its own process:

    python -m bench.provider --port 8900

POST /send counts every request and every distinct Idempotency-Key (what a real gateway
would send once), with the moment it first saw each; POST /send-batch does the same for
each message of a batch (`requests` then counts messages); GET /stats returns the counts,
GET /moments those moments (epoch seconds), so a benchmark measures due moment -> delivery.
"""

from __future__ import annotations

import argparse
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

first_seen: dict[str, float] = {}
counts = {"requests": 0}


async def send(request: Request) -> JSONResponse:
    await request.body()
    key = request.headers.get("Idempotency-Key", "")
    counts["requests"] += 1
    first_seen.setdefault(key, time.time())
    return JSONResponse({"message_id": key})


async def send_batch(request: Request) -> JSONResponse:
    """The batch endpoint: each message counted by its own idempotency key."""
    messages = (await request.json())["messages"]
    counts["requests"] += len(messages)
    now = time.time()
    results = []
    for message in messages:
        key = message["idempotency_key"]
        first_seen.setdefault(key, now)
        results.append({"idempotency_key": key, "status": "sent", "message_id": key})
    return JSONResponse({"results": results})


async def stats(_: Request) -> JSONResponse:
    return JSONResponse({"requests": counts["requests"], "unique": len(first_seen)})


async def moments(_: Request) -> JSONResponse:
    return JSONResponse(first_seen)


async def reset(_: Request) -> JSONResponse:
    first_seen.clear()
    counts["requests"] = 0
    return JSONResponse({})


app = Starlette(
    routes=[
        Route("/send", send, methods=["POST"]),
        Route("/send-batch", send_batch, methods=["POST"]),
        Route("/stats", stats),
        Route("/moments", moments),
        Route("/reset", reset, methods=["POST"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
