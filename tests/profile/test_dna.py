"""The customer's DNA: every field, PATCH with If-Match, stage history, audit, events."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN
from tests.profile.helpers import create_customer, events, query

FULL = {
    "name": "Harbin Water Co.",
    "kind": "company",
    "external_ref": "ERP-100",
    "industry": "utilities",
    "region": "north",
    "size": "large",
    "years_in_business": 31,
    "industry_standing": "regional leader",
    "timezone": "Asia/Shanghai",
    "credit": {"rating": "AA", "limit": "500000.00", "solvency_notes": "state-backed"},
    "suppliers": [{"name": "Pipes Ltd", "satisfaction": 4, "notes": None}],
    "source": "exhibition",
    "stage": "target",
    "relationship_level": "partner",
    "account_manager": "mia",
    "key_dates": [{"label": "founded", "date": "1995-03-01", "calendar": "lunar"}],
    "birthday_calendar": "lunar",
    "attributes": {"plants": 4},
    "notes": "prefers calls before 10am",
    "consent": {"email": "granted"},
}


async def test_every_dna_field_round_trips(profile: httpx.AsyncClient, profile_db: str) -> None:
    created = await create_customer(profile, **FULL)
    fetched = await profile.get(f"/v1/customers/{created['id']}", headers=ADMIN)
    assert fetched.status_code == 200
    body = fetched.json()
    for field, value in FULL.items():
        assert body[field] == value, field
    assert fetched.headers["etag"] == '"1"'
    assert [(h["field"], h["to_value"]) for h in body["history"]] == [
        ("stage", "target"),
        ("relationship_level", "partner"),
    ]
    [event] = await events(profile_db, "customer.created")
    assert event["data"]["name"] == "Harbin Water Co." and event["data"]["stage"] == "target"
    assert event["data"]["consent"] == {"email": "granted"}


async def test_patch_needs_the_current_etag(profile: httpx.AsyncClient, profile_db: str) -> None:
    customer = await create_customer(profile)
    url = f"/v1/customers/{customer['id']}"
    missing = await profile.patch(url, json={"stage": "target"}, headers=ADMIN)
    assert missing.status_code == 428
    first = await profile.patch(url, json={"stage": "target"}, headers={**ADMIN, "If-Match": '"1"'})
    assert first.status_code == 200, first.text
    assert first.json()["stage"] == "target" and first.headers["etag"] == '"2"'
    stale = await profile.patch(url, json={"stage": "lapsed"}, headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    now = (await profile.get(url, headers=ADMIN)).json()
    assert now["stage"] == "target" and now["version"] == 2
    updates = await events(profile_db, "customer.updated")
    assert [u["data"] for u in updates] == [{"stage": "target", "revision": 2}]  # what changed


async def test_patch_records_stage_and_level_history_and_audit(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile)
    url = f"/v1/customers/{customer['id']}"
    for version, change in enumerate(
        [
            {"stage": "target"},
            {"stage": "cooperating", "relationship_level": "strategic_alliance"},
            {"region": "south"},
        ],
        start=1,
    ):
        response = await profile.patch(
            url, json=change, headers={**ADMIN, "If-Match": f'"{version}"'}
        )
        assert response.status_code == 200, response.text
    history = (await profile.get(url, headers=ADMIN)).json()["history"]
    assert [(h["field"], h["from_value"], h["to_value"]) for h in history] == [
        ("stage", None, "potential"),
        ("relationship_level", None, "vendor"),
        ("stage", "potential", "target"),
        ("stage", "target", "cooperating"),
        ("relationship_level", "vendor", "strategic_alliance"),
    ]
    assert all(h["changed_by"] == "root" for h in history)
    audit = (await profile.get(f"{url}/audit", headers=ADMIN)).json()["items"]
    assert [entry["action"] for entry in audit] == ["updated", "updated", "updated", "created"]
    assert audit[0]["changes"] == {"region": [None, "south"]}
    assert audit[0]["actor"] == "root"


async def test_patch_that_changes_nothing_emits_nothing(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile, region="east")
    response = await profile.patch(
        f"/v1/customers/{customer['id']}",
        json={"region": "east"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert response.status_code == 200 and response.json()["version"] == 1
    assert await events(profile_db, "customer.updated") == []


async def test_bad_patches_are_refused_and_change_nothing(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile, external_ref="A-1")
    await create_customer(profile, external_ref="B-1")
    url = f"/v1/customers/{customer['id']}"
    headers = {**ADMIN, "If-Match": '"1"'}
    cases = [
        ({"name": None}, 422),
        ({"stage": "retired"}, 422),
        ({"years_in_business": -1}, 422),
        ({"birthday": "2999-01-01"}, 422),
        ({"referred_by": customer["id"]}, 422),
        ({"external_ref": "B-1"}, 409),
        ({"credit": {"limit": "-5"}}, 422),
        ({"suppliers": [{"name": "X", "satisfaction": 9}]}, 422),
        ({"tier": "A"}, 422),
    ]
    for body, status in cases:
        response = await profile.patch(url, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
    assert (await profile.get(url, headers=ADMIN)).json()["version"] == 1
    assert await events(profile_db, "customer.updated") == []
    rows = await query(profile_db, "SELECT count(*) AS n FROM audit_log WHERE action='updated'")
    assert rows[0].n == 0


async def test_key_contacts_travel_with_customer_updated(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    """Outreach plans contacts' birthdays: every change to a contact announces the list."""
    customer = await create_customer(
        profile, birthday="1980-02-29", birthday_calendar="lunar", key_dates=FULL["key_dates"]
    )
    (created,) = await events(profile_db, "customer.created")
    assert created["data"]["birthday_calendar"] == "lunar"
    assert created["data"]["key_dates"] == FULL["key_dates"]
    added = await profile.post(
        f"/v1/customers/{customer['id']}/contacts",
        json={
            "name": "Li Wei",
            "phone": "+86 138 0000 0000",
            "birthday": "1975-08-12",
            "birthday_calendar": "lunar",
            "decision_maker": True,
        },
        headers=ADMIN,
    )
    assert added.status_code == 201, added.text
    contact_id = added.json()["id"]
    patched = await profile.patch(
        f"/v1/customers/{customer['id']}/contacts/{contact_id}",
        json={"email": "li.wei@example.com"},
        headers=ADMIN,
    )
    assert patched.status_code == 200, patched.text
    removed = await profile.delete(
        f"/v1/customers/{customer['id']}/contacts/{contact_id}", headers=ADMIN
    )
    assert removed.status_code == 204
    lists = [e["data"]["contacts"] for e in await events(profile_db, "customer.updated")]
    assert lists[0] == [
        {
            "id": contact_id,
            "name": "Li Wei",
            "role": None,
            "phone": "+86 138 0000 0000",
            "email": None,
            "birthday": "1975-08-12",
            "birthday_calendar": "lunar",
            "decision_maker": True,
        }
    ]
    assert lists[1][0]["email"] == "li.wei@example.com"
    assert lists[2] == []
