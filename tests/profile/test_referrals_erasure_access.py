"""Referral networks, erasure of personal data, and what each role may see and do."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.conftest import ADMIN, ANALYST, MANAGER
from tests.profile.helpers import create_customer, events, query


async def buy(client: httpx.AsyncClient, customer_id: str, amount: str) -> None:
    response = await client.post(
        f"/v1/customers/{customer_id}/purchases",
        json={"amount": amount, "currency": "CNY", "purchased_at": "2026-10-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text


async def test_referrals_direct_and_further_down_with_what_they_bought(
    profile: httpx.AsyncClient,
) -> None:
    root = await create_customer(profile, name="Influencer")
    child = await create_customer(profile, name="Child", source="referral", referred_by=root["id"])
    grandchild = await create_customer(profile, name="Grandchild", referred_by=child["id"])
    await create_customer(profile, name="Stranger")
    await buy(profile, child["id"], "100.00")
    await buy(profile, child["id"], "50.50")
    await buy(profile, grandchild["id"], "10.00")
    body = (await profile.get(f"/v1/customers/{root['id']}/referrals", headers=ADMIN)).json()
    assert (body["direct"], body["total"]) == (1, 2)
    assert Decimal(body["revenue"]) == Decimal("160.50")
    assert [
        (r["name"], r["depth"], Decimal(r["revenue"]), r["purchase_count"])
        for r in body["referrals"]
    ] == [("Child", 1, Decimal("150.50"), 2), ("Grandchild", 2, Decimal("10.00"), 1)]
    empty = (await profile.get(f"/v1/customers/{grandchild['id']}/referrals", headers=ADMIN)).json()
    assert (empty["total"], Decimal(empty["revenue"])) == (0, Decimal(0))
    # A referral loop is refused.
    loop = await profile.patch(
        f"/v1/customers/{root['id']}",
        json={"referred_by": grandchild["id"]},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert loop.status_code == 422
    assert "loop" in loop.json()["detail"]


async def test_erasure_removes_personal_data_and_keeps_amounts(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(
        profile,
        name="Zhang San",
        kind="person",
        birthday="1990-01-02",
        notes="likes tea",
        external_ref="CRM-9",
    )
    cid = customer["id"]
    await profile.post(f"/v1/customers/{cid}/contacts", json={"name": "Zhang Wife"}, headers=ADMIN)
    await profile.post(
        f"/v1/customers/{cid}/interactions",
        json={"kind": "call", "at": "2026-11-01T00:00:00Z", "notes": "secret"},
        headers=ADMIN,
    )
    await profile.patch(
        f"/v1/customers/{cid}",
        json={"notes": "likes green tea"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    await buy(profile, cid, "88.80")

    assert (await profile.delete(f"/v1/customers/{cid}", headers=MANAGER)).status_code == 403
    assert (await profile.delete(f"/v1/customers/{cid}", headers=ANALYST)).status_code == 403
    erased = await profile.delete(f"/v1/customers/{cid}", headers=ADMIN)
    assert erased.status_code == 204, erased.text

    assert (await profile.get(f"/v1/customers/{cid}", headers=ADMIN)).status_code == 410
    assert (await profile.delete(f"/v1/customers/{cid}", headers=ADMIN)).status_code == 410
    listed = (await profile.get("/v1/customers", headers=ADMIN)).json()["items"]
    assert cid not in [c["id"] for c in listed]
    again = await profile.post(
        f"/v1/customers/{cid}/purchases",
        json={"amount": "1.00", "currency": "CNY", "purchased_at": "2026-10-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert again.status_code == 410

    [row] = await query(
        profile_db, "SELECT name, birthday, notes, external_ref, search_text FROM customers"
    )
    assert tuple(row) == (None, None, None, None, "")
    assert (await query(profile_db, "SELECT count(*) AS n FROM contacts"))[0].n == 0
    [interaction] = await query(profile_db, "SELECT notes, kind FROM interactions")
    assert tuple(interaction) == (None, "call")
    amounts = await query(profile_db, "SELECT amount FROM purchases")
    assert [a.amount for a in amounts] == [8880]  # kept, in minor units
    audit = await query(profile_db, "SELECT changes FROM audit_log")
    assert not any("tea" in str(a.changes) or "Zhang" in str(a.changes) for a in audit)
    [event] = await events(profile_db, "customer.erased")
    assert event["customer_id"] == cid and event["data"] == {"revision": 4}  # 4th event


async def test_an_erased_customer_stays_erased_through_re_imports_and_new_records(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    csv = (
        b"external_ref,name,kind,birthday\nERP-7,Zhang Wei,person,1980-05-01\nERP-8,Li Na,person,\n"
    )
    headers = {**ADMIN, "content-type": "text/csv"}
    first = (await profile.post("/v1/imports/customers", content=csv, headers=headers)).json()
    assert first["accepted"] == 2
    [zhang] = (
        await profile.get("/v1/customers", params={"external_ref": "ERP-7"}, headers=ADMIN)
    ).json()["items"]
    assert (await profile.delete(f"/v1/customers/{zhang['id']}", headers=ADMIN)).status_code == 204

    again = (await profile.post("/v1/imports/customers", content=csv, headers=headers)).json()
    assert (again["accepted"], again["skipped"], again["rejected"]) == (0, 1, 1)
    assert again["errors"] == [
        {
            "line": 2,
            "field": "external_ref",
            "reason": "belonged to a customer who was erased: the row is not imported",
        }
    ]
    created = await profile.post(
        "/v1/customers",
        json={"name": "Zhang Wei", "kind": "person", "external_ref": "ERP-7"},
        headers=ADMIN,
    )
    assert created.status_code == 409, created.text
    assert "erased" in created.json()["detail"]
    [li] = (
        await profile.get("/v1/customers", params={"external_ref": "ERP-8"}, headers=ADMIN)
    ).json()["items"]
    renamed = await profile.patch(
        f"/v1/customers/{li['id']}",
        json={"external_ref": "ERP-7"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert renamed.status_code == 409
    rows = await query(
        profile_db, "SELECT name, birthday, external_ref, erased_ref_digest FROM customers"
    )
    assert [r.name for r in rows if r.name] == ["Li Na"]
    digests = [r.erased_ref_digest for r in rows if r.erased_ref_digest]
    assert len(digests) == 1 and "ERP-7" not in digests[0]  # one-way: the ref is not kept


async def test_account_managers_see_and_change_only_their_customers(
    profile: httpx.AsyncClient,
) -> None:
    mine = await create_customer(profile, headers=MANAGER, name="Mine")
    assert mine["account_manager"] == "mia"  # defaults to the creating manager
    theirs = await create_customer(profile, name="Theirs", account_manager="bob")
    denied = await profile.post(
        "/v1/customers",
        json={"name": "X", "kind": "person", "account_manager": "bob"},
        headers=MANAGER,
    )
    assert denied.status_code == 403

    listed = (await profile.get("/v1/customers", headers=MANAGER)).json()["items"]
    assert [c["name"] for c in listed] == ["Mine"]
    bob_filter = await profile.get(
        "/v1/customers", params={"account_manager": "bob"}, headers=MANAGER
    )
    assert bob_filter.json()["items"] == []
    for method, path in [
        ("GET", ""),
        ("GET", "/purchases"),
        ("GET", "/audit"),
        ("PATCH", ""),
        ("POST", "/contacts"),
    ]:
        response = await profile.request(
            method,
            f"/v1/customers/{theirs['id']}{path}",
            headers={**MANAGER, "If-Match": '"1"'},
            json={"name": "Y"} if method != "GET" else None,
        )
        assert response.status_code == 404, (method, path, response.text)
    handover = await profile.patch(
        f"/v1/customers/{mine['id']}",
        json={"account_manager": "bob"},
        headers={**MANAGER, "If-Match": '"1"'},
    )
    assert handover.status_code == 403
    by_admin = await profile.patch(
        f"/v1/customers/{mine['id']}",
        json={"account_manager": "bob"},
        headers={**ADMIN, "If-Match": '"1"'},
    )
    assert by_admin.status_code == 200

    everyone = (await profile.get("/v1/customers", headers=ANALYST)).json()["items"]
    assert {c["name"] for c in everyone} == {"Mine", "Theirs"}
    assert (
        await profile.patch(
            f"/v1/customers/{theirs['id']}",
            json={"name": "Z"},
            headers={**ANALYST, "If-Match": '"1"'},
        )
    ).status_code == 403
    audit = (await profile.get(f"/v1/customers/{mine['id']}/audit", headers=ADMIN)).json()
    assert [(e["actor"], e["action"]) for e in audit["items"]] == [
        ("root", "updated"),
        ("mia", "created"),
    ]


async def test_a_referral_tree_lists_only_the_customers_the_caller_may_see(
    profile: httpx.AsyncClient,
) -> None:
    mine = await create_customer(profile, name="Mia's", account_manager="mia")
    theirs = await create_customer(
        profile, name="Someone else's", account_manager="leo", referred_by=mine["id"]
    )
    also_mine = await create_customer(
        profile, name="Also Mia's", account_manager="mia", referred_by=theirs["id"]
    )
    await buy(profile, theirs["id"], "900.00")
    await buy(profile, also_mine["id"], "100.00")
    url = f"/v1/customers/{mine['id']}/referrals"
    as_manager = (await profile.get(url, headers=MANAGER)).json()
    assert [r["name"] for r in as_manager["referrals"]] == ["Also Mia's"]
    assert (as_manager["total"], as_manager["hidden"]) == (2, 1)
    assert Decimal(as_manager["revenue"]) == Decimal("1000.00")  # the referrer's worth
    assert "900.00" not in str(as_manager["referrals"])  # (ids are hex: no dot)
    as_admin = (await profile.get(url, headers=ADMIN)).json()
    assert [r["name"] for r in as_admin["referrals"]] == ["Someone else's", "Also Mia's"]
    assert as_admin["hidden"] == 0


async def test_analysts_read_no_contact_details_in_the_audit_or_through_search(
    profile: httpx.AsyncClient,
) -> None:
    customer = await create_customer(profile, name="Songhua Dairy")
    url = f"/v1/customers/{customer['id']}"
    added = await profile.post(
        f"{url}/contacts",
        json={"name": "Wang Fang", "email": "wang.fang@songhua.example", "phone": "13800000000"},
        headers=ADMIN,
    )
    await profile.patch(
        f"{url}/contacts/{added.json()['id']}",
        json={"phone": "13900000000"},
        headers=ADMIN,
    )
    as_admin = (await profile.get(f"{url}/audit", headers=ADMIN)).json()["items"]
    assert "13900000000" in str(as_admin) and "Wang Fang" in str(as_admin)
    as_analyst = (await profile.get(f"{url}/audit", headers=ANALYST)).json()["items"]
    assert [e["action"] for e in as_analyst] == [e["action"] for e in as_admin]
    for entry in as_analyst:
        text = str(entry["changes"])
        assert "1380" not in text and "1390" not in text and "Wang" not in text, entry
    updated = next(e for e in as_analyst if e["action"] == "contact_updated")
    assert updated["changes"]["contact_id"] == added.json()["id"]
    assert set(updated["changes"]) == set(
        next(e for e in as_admin if e["action"] == "contact_updated")["changes"]
    )

    for text, analyst_hits in (("songhua dairy", 1), ("wang.fang@songhua", 0), ("wang fang", 0)):
        by_admin = await profile.get("/v1/customers", params={"text": text}, headers=ADMIN)
        by_analyst = await profile.get("/v1/customers", params={"text": text}, headers=ANALYST)
        assert len(by_admin.json()["items"]) == 1, text
        assert len(by_analyst.json()["items"]) == analyst_hits, text
