"""Contacts, consent, payments, interactions and purchase date ranges, with their events."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import ADMIN, ANALYST, MANAGER
from tests.profile.helpers import create_customer, events, query

CONTACT = {
    "name": "Wang Li",
    "role": "purchasing head",
    "phone": "+86 451 1234 5678",
    "email": "wang.li@example.com",
    "birthday": "1980-05-04",
    "decision_maker": True,
}


async def test_contacts_are_kept_and_searchable(profile: httpx.AsyncClient) -> None:
    customer = await create_customer(profile, name="Songhua Dairy")
    url = f"/v1/customers/{customer['id']}/contacts"
    added = await profile.post(url, json=CONTACT, headers=ADMIN)
    assert added.status_code == 201, added.text
    listed = (await profile.get(url, headers=ADMIN)).json()["items"]
    assert [(c["name"], c["decision_maker"], c["birthday"]) for c in listed] == [
        ("Wang Li", True, "1980-05-04")
    ]
    found = (await profile.get("/v1/customers", params={"text": "wang"}, headers=ADMIN)).json()
    assert [c["id"] for c in found["items"]] == [customer["id"]]
    # Analysts read customers but get no contact details.
    assert (await profile.get(url, headers=ANALYST)).status_code == 403
    for bad in (
        {"name": ""},
        {"name": "X", "email": "not-an-email"},
        {"name": "X", "phone": "call me"},
        {"name": "X", "birthday": "2999-01-01"},
    ):
        assert (await profile.post(url, json=bad, headers=ADMIN)).status_code == 422, bad
    assert len((await profile.get(url, headers=ADMIN)).json()["items"]) == 1


async def test_consent_keeps_history_and_current_state(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile, consent={"email": "granted"})
    url = f"/v1/customers/{customer['id']}/consent"
    granted = await profile.put(
        url, json={"sms": "granted", "source": "signed form"}, headers=ADMIN
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["consent"] == {"email": "granted", "sms": "granted"}
    await profile.put(
        url, json={"sms": "withdrawn", "email": "granted", "source": "call"}, headers=ADMIN
    )
    body = (await profile.get(url, headers=ADMIN)).json()
    assert body["consent"] == {"email": "granted", "sms": "withdrawn"}
    assert [(h["channel"], h["state"], h["source"]) for h in body["history"]] == [
        ("email", "granted", "customer created"),
        ("sms", "granted", "signed form"),
        ("sms", "withdrawn", "call"),
    ]
    customer_now = (await profile.get(f"/v1/customers/{customer['id']}", headers=ADMIN)).json()
    assert customer_now["consent"] == {"email": "granted", "sms": "withdrawn"}
    updates = [e["data"] for e in await events(profile_db, "customer.updated")]
    assert updates == [
        {"consent": {"email": "granted", "sms": "granted"}, "revision": 2},
        {"consent": {"email": "granted", "sms": "withdrawn"}, "revision": 3},
    ]
    for bad in (
        {"source": "x"},
        {"sms": "maybe", "source": "x"},
        {"sms": "granted"},
        {"fax": "granted", "source": "x"},
    ):
        assert (await profile.put(url, json=bad, headers=ADMIN)).status_code == 422, bad
    assert len((await profile.get(url, headers=ADMIN)).json()["history"]) == 3


async def test_payments_are_money_collected(profile: httpx.AsyncClient, profile_db: str) -> None:
    customer = await create_customer(profile)
    other = await create_customer(profile, name="Other")
    purchase = (
        await profile.post(
            f"/v1/customers/{customer['id']}/purchases",
            json={"amount": "300.00", "currency": "CNY", "purchased_at": "2026-10-01T00:00:00Z"},
            headers=ADMIN,
        )
    ).json()
    other_purchase = (
        await profile.post(
            f"/v1/customers/{other['id']}/purchases",
            json={"amount": "1.00", "currency": "CNY", "purchased_at": "2026-10-01T00:00:00Z"},
            headers=ADMIN,
        )
    ).json()
    url = f"/v1/customers/{customer['id']}/payments"
    paid = await profile.post(
        url,
        json={
            "amount": "200.00",
            "currency": "CNY",
            "received_at": "2026-10-15T00:00:00Z",
            "purchase_id": purchase["id"],
            "method": "transfer",
        },
        headers=ADMIN,
    )
    assert paid.status_code == 201, paid.text
    [event] = await events(profile_db, "payment.recorded")
    assert event["data"]["amount"] == "200.00" and event["data"]["purchase_id"] == purchase["id"]
    bad_cases = [
        {"amount": "-5.00", "currency": "CNY", "received_at": "2026-10-15T00:00:00Z"},
        {"amount": "5.00", "currency": "USD", "received_at": "2026-10-15T00:00:00Z"},
        {
            "amount": "5.00",
            "currency": "CNY",
            "received_at": "2026-10-15T00:00:00Z",
            "purchase_id": other_purchase["id"],
        },
        {
            "amount": "5.00",
            "currency": "CNY",
            "received_at": "2026-10-15T00:00:00Z",
            "purchase_id": str(uuid.uuid4()),
        },
    ]
    for bad in bad_cases:
        assert (await profile.post(url, json=bad, headers=ADMIN)).status_code == 422, bad
    listed = (await profile.get(url, headers=ADMIN)).json()["items"]
    assert [p["amount"] for p in listed] == ["200.00"]
    assert len(await events(profile_db, "payment.recorded")) == 1


async def test_interactions_are_logged_with_their_author(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile)
    other = await create_customer(profile, name="Other")
    contact = (
        await profile.post(f"/v1/customers/{customer['id']}/contacts", json=CONTACT, headers=ADMIN)
    ).json()
    foreign = (
        await profile.post(f"/v1/customers/{other['id']}/contacts", json=CONTACT, headers=ADMIN)
    ).json()
    url = f"/v1/customers/{customer['id']}/interactions"
    logged = await profile.post(
        url,
        json={
            "kind": "visit",
            "at": "2026-11-02T03:00:00Z",
            "contact_id": contact["id"],
            "satisfaction": 5,
            "notes": "toured the plant",
        },
        headers=ADMIN,
    )
    assert logged.status_code == 201, logged.text
    assert logged.json()["by"] == "root"
    [event] = await events(profile_db, "interaction.logged")
    assert event["data"]["kind"] == "visit" and event["data"]["satisfaction"] == 5
    assert "notes" not in event["data"]  # free text stays in profile
    for bad in (
        {"kind": "party", "at": "2026-11-02T03:00:00Z"},
        {"kind": "call", "at": "2026-11-02T03:00:00Z", "satisfaction": 6},
        {"kind": "call", "at": "2026-11-02T03:00:00Z", "contact_id": foreign["id"]},
        {"kind": "call"},
    ):
        assert (await profile.post(url, json=bad, headers=ADMIN)).status_code == 422, bad
    assert len(await events(profile_db, "interaction.logged")) == 1


async def test_purchases_filter_by_date_range(profile: httpx.AsyncClient) -> None:
    customer = await create_customer(profile)
    url = f"/v1/customers/{customer['id']}/purchases"
    for month in ("01", "03", "05", "07"):
        await profile.post(
            url,
            json={
                "amount": "1.00",
                "currency": "CNY",
                "purchased_at": f"2026-{month}-10T00:00:00Z",
            },
            headers=ADMIN,
        )
    window = {"from": "2026-03-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"}
    items = (await profile.get(url, params=window, headers=ADMIN)).json()["items"]
    assert [p["purchased_at"][5:7] for p in items] == ["03", "05"]
    reversed_window = {"from": "2026-07-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    assert (await profile.get(url, params=reversed_window, headers=ADMIN)).status_code == 422
    naive = {"from": "2026-03-01T00:00:00"}
    assert (await profile.get(url, params=naive, headers=ADMIN)).status_code == 422


async def test_tier_comes_from_tier_changed(profile: httpx.AsyncClient, profile_db: str) -> None:
    import datetime as dt

    from services.profile.consumers import HANDLERS
    from shared.db import create_engine, session_factory
    from shared.events import EventEnvelope, parse_data

    customer = await create_customer(profile)

    def change(tier: str, changed_at: str) -> EventEnvelope:
        return EventEnvelope(
            id=uuid.uuid4(),
            type="tier.changed",
            occurred_at=dt.datetime.now(dt.UTC),
            producer="tiering",
            customer_id=uuid.UUID(customer["id"]),
            data={
                "previous_tier": None,
                "tier": tier,
                "policy_id": str(uuid.uuid4()),
                "policy_version": 1,
                "changed_at": changed_at,
            },
        )

    engine = create_engine(profile_db)
    # The latest change wins; an older one arriving after it (a DLQ replay) is ignored.
    for event in (
        change("B", "2026-10-01T00:00:00Z"),
        change("A", "2026-11-01T00:00:00Z"),
        change("C", "2026-10-15T00:00:00Z"),
    ):
        async with session_factory(engine)() as session, session.begin():
            await HANDLERS["tier.changed"](session, event, parse_data(event))
    await engine.dispose()
    assert (await profile.get(f"/v1/customers/{customer['id']}", headers=ADMIN)).json()[
        "tier"
    ] == "A"
    listed = (await profile.get("/v1/customers", params={"tier": "A"}, headers=ADMIN)).json()
    assert [c["id"] for c in listed["items"]] == [customer["id"]]
    rows = await query(profile_db, "SELECT count(*) AS n FROM customers WHERE tier = 'A'")
    assert rows[0].n == 1


async def test_a_polls_tier_changes_are_applied_together(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    """One batch (the consumer's bulk handler): per customer the latest change wins, the
    last of two at one moment; an erased customer gets none; a change older than the one
    held is ignored."""
    import datetime as dt

    from services.profile.consumers import BULK_HANDLERS
    from shared.db import create_engine, session_factory
    from shared.events import EventData, EventEnvelope, parse_data

    first, second, erased, ahead = [
        uuid.UUID((await create_customer(profile, name=f"C{n}"))["id"]) for n in range(4)
    ]
    assert (await profile.delete(f"/v1/customers/{erased}", headers=ADMIN)).status_code == 204

    def change(customer: uuid.UUID, tier: str, day: int) -> tuple[EventEnvelope, EventData]:
        event = EventEnvelope(
            id=uuid.uuid4(),
            type="tier.changed",
            occurred_at=dt.datetime.now(dt.UTC),
            producer="tiering",
            customer_id=customer,
            data={
                "previous_tier": None,
                "tier": tier,
                "policy_id": str(uuid.uuid4()),
                "policy_version": 1,
                "changed_at": f"2026-11-{day:02d}T00:00:00Z",
            },
        )
        return event, parse_data(event)

    engine = create_engine(profile_db)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await BULK_HANDLERS["tier.changed"](session, [change(ahead, "A", 20)])
    async with sessions() as session, session.begin():
        await BULK_HANDLERS["tier.changed"](
            session,
            [
                change(first, "B", 1),
                change(first, "A", 3),
                change(second, "C", 2),
                change(first, "C", 2),
                change(second, "B", 2),
                change(erased, "A", 1),
                change(ahead, "C", 10),
            ],
        )
    await engine.dispose()
    rows = await query(profile_db, "SELECT id, tier FROM customers")
    tiers = {uuid.UUID(str(row.id)): row.tier for row in rows}
    assert tiers[first] == "A"
    assert tiers[second] == "B"
    assert tiers[erased] is None
    assert tiers[ahead] == "A"


async def test_contacts_can_be_changed_and_removed(
    profile: httpx.AsyncClient, profile_db: str
) -> None:
    customer = await create_customer(profile)
    other = await create_customer(profile, name="Other")
    base = f"/v1/customers/{customer['id']}/contacts"
    contact = (await profile.post(base, json=CONTACT, headers=ADMIN)).json()
    await profile.post(
        f"/v1/customers/{customer['id']}/interactions",
        json={"kind": "call", "at": "2026-11-01T00:00:00Z", "contact_id": contact["id"]},
        headers=ADMIN,
    )
    changed = await profile.patch(
        f"{base}/{contact['id']}", json={"phone": "+86 10 0000 0000", "role": None}, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["phone"], changed.json()["role"]) == ("+86 10 0000 0000", None)
    for bad in ({"name": None}, {"email": "nope"}, {"colour": "red"}):
        response = await profile.patch(f"{base}/{contact['id']}", json=bad, headers=ADMIN)
        assert response.status_code == 422, bad
    foreign = f"/v1/customers/{other['id']}/contacts/{contact['id']}"
    assert (await profile.patch(foreign, json={"role": "x"}, headers=ADMIN)).status_code == 404
    assert (await profile.delete(foreign, headers=ADMIN)).status_code == 404
    assert (await profile.delete(f"{base}/{contact['id']}", headers=ADMIN)).status_code == 204
    assert (await profile.get(base, headers=ADMIN)).json()["items"] == []
    [interaction] = (
        await profile.get(f"/v1/customers/{customer['id']}/interactions", headers=ADMIN)
    ).json()["items"]
    assert interaction["contact_id"] is None
    found = (await profile.get("/v1/customers", params={"text": "wang"}, headers=ADMIN)).json()
    assert found["items"] == []
    actions = [
        e["action"]
        for e in (await profile.get(f"/v1/customers/{customer['id']}/audit", headers=ADMIN)).json()[
            "items"
        ]
    ]
    assert actions[:3] == ["contact_removed", "contact_updated", "interaction_logged"]


async def test_each_record_has_its_own_url(profile: httpx.AsyncClient) -> None:
    mine = await create_customer(profile, account_manager="mia")
    theirs = await create_customer(profile, account_manager="noah")
    bodies = {
        "contacts": CONTACT,
        "purchases": {"amount": "9.50", "currency": "CNY", "purchased_at": "2026-05-01T08:00:00Z"},
        "payments": {"amount": "9.50", "currency": "CNY", "received_at": "2026-05-02T08:00:00Z"},
        "interactions": {"kind": "call", "at": "2026-05-03T08:00:00Z", "notes": "checked in"},
    }
    for kind, body in bodies.items():
        created = await profile.post(f"/v1/customers/{mine['id']}/{kind}", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        assert location == f"/v1/customers/{mine['id']}/{kind}/{created.json()['id']}"
        shown = await profile.get(location, headers=MANAGER)
        assert (shown.status_code, shown.json()) == (200, created.json()), kind
        # Not under another customer's path, nor for another manager, nor made up.
        elsewhere = location.replace(mine["id"], theirs["id"])
        assert (await profile.get(elsewhere, headers=ADMIN)).status_code == 404
        other = await create_customer(profile, account_manager="noah")
        made = await profile.post(f"/v1/customers/{other['id']}/{kind}", json=body, headers=ADMIN)
        assert (await profile.get(made.headers["Location"], headers=MANAGER)).status_code == 404
        unknown = f"/v1/customers/{mine['id']}/{kind}/{uuid.uuid4()}"
        assert (await profile.get(unknown, headers=ADMIN)).status_code == 404
    (contact,) = (await profile.get(f"/v1/customers/{mine['id']}/contacts", headers=ADMIN)).json()[
        "items"
    ]
    contact_url = f"/v1/customers/{mine['id']}/contacts/{contact['id']}"
    assert (await profile.get(contact_url, headers=ANALYST)).status_code == 403
