"""Delivery of automated contacts through a provider over HTTP.

One generic adapter: a JSON request signed with HMAC-SHA256 (`X-CRM-Signature: sha256=<hex>`
over the body, with a shared secret) posted to a configurable URL, with the task id as
`Idempotency-Key`, so a company plugs in its own SMS or email gateway and a retry never
sends twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

SIGNATURE_HEADER = "X-CRM-Signature"


@dataclass(frozen=True)
class DeliveryResult:
    """What the provider said: delivered, refused for good, or worth another try."""

    outcome: str  # sent | failed | retry
    status_code: int | None
    detail: dict[str, Any]


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class ClientPool:
    """HTTP clients of one connection each, lent for one request at a time. Many requests
    at once through one httpx client queue on its connection pool: measured here, 64 at a
    time through one client ran at a third of the rate of one at a time, while separate
    clients kept their rate."""

    def __init__(self, size: int) -> None:
        # One TLS context for all: one per client costs ~70 ms each, on the event loop.
        tls = ssl.create_default_context()
        self._all = [
            httpx.AsyncClient(limits=httpx.Limits(max_connections=1), verify=tls)
            for _ in range(size)
        ]
        self._idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self._all:
            self._idle.put_nowait(client)

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        client = await self._idle.get()
        try:
            return await client.post(url, content=content, headers=headers)
        finally:
            self._idle.put_nowait(client)

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.gather(*(client.aclose() for client in self._all))


class HttpProvider:
    """Posts each delivery to the provider's URL, signed, with its idempotency key."""

    def __init__(self, url: str, secret: str, timeout_s: float, clients: ClientPool) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.clients = clients

    async def deliver(self, idempotency_key: str, message: dict[str, Any]) -> DeliveryResult:
        body = orjson.dumps(message)
        headers = {
            "content-type": "application/json",
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: sign(self.secret, body),
        }
        try:
            response = await asyncio.wait_for(
                self.clients.post(self.url, body, headers), self.timeout_s
            )
        except (httpx.HTTPError, TimeoutError) as exc:
            return DeliveryResult("retry", None, {"error": type(exc).__name__})
        try:
            answer: Any = response.json()
        except ValueError:
            answer = {"text": response.text[:500]}
        detail = answer if isinstance(answer, dict) else {"answer": answer}
        if response.is_success:
            return DeliveryResult("sent", response.status_code, detail)
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            return DeliveryResult("retry", response.status_code, detail)
        return DeliveryResult("failed", response.status_code, detail)
