"""Profile's HTTP surface for the slice: auth, validation, idempotency, errors, lists."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from shared.db import create_engine
from tests.conftest import ADMIN, ANALYST, MANAGER

PURCHASE = {"amount": "120.00", "currency": "CNY", "purchased_at": "2026-11-01T08:00:00Z"}


async def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        counts = {
            table: int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar() or 0)
            for table in ("customers", "purchases", "outbox", "idempotency_keys")
        }
    await engine.dispose()
    return counts


async def new_customer(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers", json={"name": "Acme", "kind": "company", **fields}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_missing_or_unknown_key_is_401(profile: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}):
        response = await profile.get("/v1/customers", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_key_without_the_role_is_403_and_writes_nothing(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    before = await table_counts(profile_db)
    response = await profile.post(
        "/v1/customers", json={"name": "Acme", "kind": "company"}, headers=ANALYST
    )
    assert response.status_code == 403
    assert response.json()["title"] == "Not allowed for this key"
    assert await table_counts(profile_db) == before
    assert (await profile.get("/v1/customers", headers=ANALYST)).status_code == 200


async def test_health_endpoints_are_open(profile: httpx.AsyncClient) -> None:
    assert (await profile.get("/healthz")).json() == {"status": "ok", "broker": "unknown"}
    ready = await profile.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    metrics = await profile.get("/metrics")
    assert metrics.status_code == 200
    assert "crm_http_requests_total" in metrics.text


DEEP: Any = []
for _ in range(253):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Acme", "kind": "robot"}, "kind"),
        ({"kind": "company"}, "name"),
        ({"name": "", "kind": "company"}, "name"),
        ({"name": "x" * 201, "kind": "company"}, "name"),
        ({"name": "Acme", "kind": "company", "stage": "married"}, "stage"),
        ({"name": "Acme", "kind": "company", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "Acme", "kind": "company", "consent": {"sms": "maybe"}}, "consent.sms"),
        ({"name": "Acme", "kind": "company", "tier": "A"}, "tier"),
        ({"name": 42, "kind": "company"}, "name"),
        # Free-form attributes: within JSON's safe integers, finite, at most 5 levels deep.
        ({"name": "A", "kind": "company", "attributes": {"a": 18446744073709551616}}, "attributes"),
        ({"name": "A", "kind": "company", "attributes": {"a": -(2**53)}}, "attributes"),
        ({"name": "A", "kind": "company", "attributes": {"a": DEEP}}, "attributes"),
        ({"name": "A", "kind": "company", "attributes": {"a": [[[[[[1]]]]]]}}, "attributes"),
    ],
)
async def test_bad_customer_is_422_naming_the_field_and_writes_nothing(
    profile: httpx.AsyncClient, profile_db: str, body: dict[str, Any], field: str
) -> None:
    before = await table_counts(profile_db)
    response = await profile.post("/v1/customers", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].endswith("validation-error")
    assert field in [error["field"] for error in problem["errors"]], problem
    assert await table_counts(profile_db) == before


async def test_malformed_json_is_422_not_500(profile: httpx.AsyncClient) -> None:
    response = await profile.post(
        "/v1/customers", content=b"{name:", headers={**ADMIN, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    not_finite = await profile.post(
        "/v1/customers",
        content=b'{"name": "A", "kind": "company", "attributes": {"a": NaN}}',
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert not_finite.status_code == 422, not_finite.text


async def test_attributes_within_the_bounds_are_kept(profile: httpx.AsyncClient) -> None:
    attributes = {"big": 2**53 - 1, "nested": [[[[{"x": 1.5}]]]], "none": None}
    created = await profile.post(
        "/v1/customers",
        json={"name": "A", "kind": "company", "attributes": attributes},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    read = await profile.get(created.headers["location"], headers=ADMIN)
    assert read.json()["attributes"] == attributes


async def test_external_ref_is_a_filter(profile: httpx.AsyncClient) -> None:
    wanted = await new_customer(profile, external_ref="ACME-1")
    await new_customer(profile, external_ref="ACME-2")
    found = await profile.get("/v1/customers", params={"external_ref": "ACME-1"}, headers=ADMIN)
    assert [item["id"] for item in found.json()["items"]] == [wanted["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": 1e20}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"quantity": "-2"}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"currency": "cny"}, "currency"),
        ({"purchased_at": "2026-11-01T08:00:00"}, "purchased_at"),  # no time zone
        ({"purchased_at": "2999-01-01T00:00:00Z"}, "purchased_at"),
        ({"purchased_at": "1066-10-14T00:00:00Z"}, "purchased_at"),
        ({"sku": "s" * 101}, "sku"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_purchase_is_422_and_writes_nothing(
    profile: httpx.AsyncClient, profile_db: str, change: dict[str, Any], field: str
) -> None:
    customer = await new_customer(profile)
    before = await table_counts(profile_db)
    response = await profile.post(
        f"/v1/customers/{customer['id']}/purchases", json={**PURCHASE, **change}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert await table_counts(profile_db) == before


async def test_purchase_in_another_currency_is_refused(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await new_customer(profile)
    before = await table_counts(profile_db)
    response = await profile.post(
        f"/v1/customers/{customer['id']}/purchases",
        json={**PURCHASE, "currency": "USD"},
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert "base currency CNY" in response.json()["detail"]
    assert await table_counts(profile_db) == before


async def test_unknown_customer_is_404(profile: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    assert (await profile.get(f"/v1/customers/{missing}", headers=ADMIN)).status_code == 404
    response = await profile.post(
        f"/v1/customers/{missing}/purchases", json=PURCHASE, headers=ADMIN
    )
    assert response.status_code == 404
    assert response.json()["title"] == "Not found"
    assert (await profile.get("/v1/customers/not-a-uuid", headers=ADMIN)).status_code == 422


async def test_idempotency_key_returns_first_result_and_emits_once(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    headers = {**MANAGER, "Idempotency-Key": "create-acme-1"}
    body = {"name": "Acme", "kind": "company", "account_manager": "mia"}
    first = await profile.post("/v1/customers", json=body, headers=headers)
    again = await profile.post("/v1/customers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"] == f"/v1/customers/{first.json()['id']}"
    assert again.headers.get("Idempotent-Replayed") == "true"
    counts = await table_counts(profile_db)
    assert counts["customers"] == 1 and counts["outbox"] == 1

    other = await profile.post("/v1/customers", json={**body, "name": "Other"}, headers=headers)
    assert other.status_code == 422
    assert (await table_counts(profile_db))["customers"] == 1

    customer_id = first.json()["id"]
    purchase_headers = {**MANAGER, "Idempotency-Key": "order-77"}
    p1 = await profile.post(
        f"/v1/customers/{customer_id}/purchases", json=PURCHASE, headers=purchase_headers
    )
    p2 = await profile.post(
        f"/v1/customers/{customer_id}/purchases", json=PURCHASE, headers=purchase_headers
    )
    assert p1.json()["id"] == p2.json()["id"]
    counts = await table_counts(profile_db)
    assert counts["purchases"] == 1 and counts["outbox"] == 2


async def test_duplicate_external_ids_conflict(profile: httpx.AsyncClient) -> None:
    await new_customer(profile, external_ref="ERP-1")
    again = await profile.post(
        "/v1/customers",
        json={"name": "B", "kind": "person", "external_ref": "ERP-1"},
        headers=ADMIN,
    )
    assert again.status_code == 409
    customer = await new_customer(profile)
    url = f"/v1/customers/{customer['id']}/purchases"
    assert (
        await profile.post(url, json={**PURCHASE, "external_id": "INV-1"}, headers=ADMIN)
    ).status_code == 201
    assert (
        await profile.post(url, json={**PURCHASE, "external_id": "INV-1"}, headers=ADMIN)
    ).status_code == 409


async def test_lists_filter_and_paginate_with_a_cursor(profile: httpx.AsyncClient) -> None:
    made = [
        await new_customer(profile, name=f"Shop {n}", region="east" if n % 2 else "west")
        for n in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "region": "east", **({"cursor": cursor} if cursor else {})}
        page = (await profile.get("/v1/customers", params=params, headers=ADMIN)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in made if c["region"] == "east"]
    found = (await profile.get("/v1/customers", params={"text": "shop 4"}, headers=ADMIN)).json()
    assert [item["name"] for item in found["items"]] == ["Shop 4"]
    bad = await profile.get("/v1/customers", params={"cursor": "garbage!"}, headers=ADMIN)
    assert bad.status_code == 422
    too_big = await profile.get("/v1/customers", params={"limit": 501}, headers=ADMIN)
    assert too_big.status_code == 422


async def test_purchases_list_in_time_order(profile: httpx.AsyncClient) -> None:
    customer = await new_customer(profile)
    url = f"/v1/customers/{customer['id']}/purchases"
    for day in ("03", "01", "02"):
        await profile.post(
            url, json={**PURCHASE, "purchased_at": f"2026-10-{day}T00:00:00Z"}, headers=ADMIN
        )
    page = (await profile.get(url, params={"limit": 2}, headers=ADMIN)).json()
    rest = (await profile.get(url, params={"cursor": page["next_cursor"]}, headers=ADMIN)).json()
    days = [p["purchased_at"][8:10] for p in page["items"] + rest["items"]]
    assert days == ["01", "02", "03"]
    assert rest["next_cursor"] is None


async def test_money_and_quantities_read_the_same_on_write_and_on_read(
    profile: httpx.AsyncClient,
) -> None:
    customer = await new_customer(profile)
    url = f"/v1/customers/{customer['id']}/purchases"
    written = await profile.post(
        url,
        json={**PURCHASE, "amount": "125000", "quantity": "2"},
        headers=ADMIN,
    )
    assert (written.json()["amount"], written.json()["quantity"]) == ("125000.00", "2.000")
    defaulted = await profile.post(url, json={**PURCHASE, "amount": "7.5"}, headers=ADMIN)
    assert (defaulted.json()["amount"], defaulted.json()["quantity"]) == ("7.50", "1.000")
    read = (await profile.get(url, headers=ADMIN)).json()["items"]
    assert sorted((r["amount"], r["quantity"]) for r in read) == sorted(
        [("125000.00", "2.000"), ("7.50", "1.000")]
    )
