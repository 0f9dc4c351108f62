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


class HttpProvider:
    """Posts each delivery to the provider's URL, signed, with its idempotency key."""

    def __init__(self, url: str, secret: str, timeout_s: float, client: httpx.AsyncClient) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.client = client

    async def deliver(self, idempotency_key: str, message: dict[str, Any]) -> DeliveryResult:
        body = orjson.dumps(message)
        headers = {
            "content-type": "application/json",
            "Idempotency-Key": idempotency_key,
            SIGNATURE_HEADER: sign(self.secret, body),
        }
        try:
            response = await asyncio.wait_for(
                self.client.post(self.url, content=body, headers=headers), self.timeout_s
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
