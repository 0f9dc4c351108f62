"""Profile stamps each `customer.*` event with the customer's revision: one more at every
event of that customer, so consumers can order what arrives in any order."""

from __future__ import annotations

import json

import httpx

from tests.conftest import ADMIN, query


async def test_profile_stamps_each_customer_event_with_one_more_revision(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    created = await profile.post(
        "/v1/customers", json={"name": "Acme", "kind": "company"}, headers=ADMIN
    )
    customer = created.json()["id"]
    patched = await profile.patch(
        f"/v1/customers/{customer}",
        json={"account_manager": "noah"},
        headers={**ADMIN, "If-Match": created.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    await profile.put(
        f"/v1/customers/{customer}/consent",
        json={"email": "granted", "source": "form"},
        headers=ADMIN,
    )
    await profile.post(f"/v1/customers/{customer}/contacts", json={"name": "Li"}, headers=ADMIN)
    await profile.delete(f"/v1/customers/{customer}", headers=ADMIN)
    rows = await query(
        profile_db,
        "SELECT event_type, payload FROM outbox WHERE message_key = :c AND event_type LIKE "
        "'customer.%' ORDER BY id",
        c=customer,
    )
    stamped = [(row.event_type, json.loads(row.payload)["data"]["revision"]) for row in rows]
    assert stamped == [
        ("customer.created", 1),
        ("customer.updated", 2),  # the patch
        ("customer.updated", 3),  # consent
        ("customer.updated", 4),  # the key contacts
        ("customer.erased", 5),
    ]
