"""Helpers for profile tests: read what a request wrote, straight from the database."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import ADMIN, query


async def events(url: str, event_type: str) -> list[dict[str, Any]]:
    """Envelopes of one type in profile's outbox, oldest first."""
    rows = await query(
        url, "SELECT payload FROM outbox WHERE event_type = :t ORDER BY id", t=event_type
    )
    return [json.loads(row.payload) for row in rows]


async def create_customer(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers",
        json={"name": "Acme", "kind": "company", **fields},
        headers=headers or ADMIN,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
