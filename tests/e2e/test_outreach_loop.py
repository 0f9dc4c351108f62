"""Outreach over the real broker: profile's customer (contacts, consent) reaches outreach;
tier.changed into the top tier asks for a hand-over; complaint.opened (from the complaints
service) holds marketing and complaint.closed releases it and asks for a follow-up; a
delivery's outreach.completed goes out on Kafka."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from services.complaints.app import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.outreach.app import create_app as create_outreach
from services.outreach.settings import OutreachSettings
from services.profile.app import create_app as create_profile
from services.profile.settings import ProfileSettings
from shared.broker import EmbeddedBroker
from shared.outbox import envelope_json
from tests.complaints.conftest import STEP_FIELDS
from tests.complaints.test_workflow import PATHS
from tests.conftest import (
    ADMIN,
    DatabaseFactory,
    eventually,
    query,
    read_topic,
    running,
    service_settings,
)
from tests.outreach.conftest import ALWAYS_OPEN, born_in
from tests.provider import FakeProvider


async def publish_tier_changed(broker: EmbeddedBroker, topic: str, customer_id: str) -> None:
    """What tiering announces when a re-rank puts the customer in A."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        now = dt.datetime.now(dt.UTC)
        value = envelope_json(
            event_id=uuid.uuid4(),
            event_type="tier.changed",
            occurred_at=now,
            producer="tiering",
            customer_id=uuid.UUID(customer_id),
            correlation_id=None,
            data={
                "previous_tier": "B",
                "tier": "A",
                "policy_id": str(uuid.uuid4()),
                "policy_version": 1,
                "scores": {},
                "reasons": ["A: in the top 20% by revenue"],
                "changed_at": now.isoformat(),
            },
        )
        await producer.send_and_wait(topic, value.encode(), key=customer_id.encode())
    finally:
        await producer.stop()


async def test_outreach_follows_profile_tiering_and_complaints(
    broker: EmbeddedBroker,
    new_database: DatabaseFactory,
    topic_prefix: str,
    provider: FakeProvider,
) -> None:
    def settings(kind: Any, service: str, url: str, **extra: Any) -> Any:
        return service_settings(
            kind, database_url=url, bootstrap=broker.bootstrap, prefix=topic_prefix, **extra
        )

    profile = create_profile(settings(ProfileSettings, "profile", await new_database("profile")))
    complaints = create_complaints(
        settings(ComplaintsSettings, "complaints", await new_database("complaints"))
    )
    outreach_db = await new_database("outreach")
    outreach = create_outreach(
        settings(
            OutreachSettings,
            "outreach",
            outreach_db,
            provider_url=f"{provider.url}/ok",
            provider_secret="provider-shared-secret",
            planning_interval_s=0,
        )
    )
    async with (
        running(profile) as people,
        running(complaints) as desk,
        running(outreach) as contacts,
    ):
        for tier in ("A", "*"):
            plan = (await contacts.get(f"/v1/plans/{tier}", headers=ADMIN)).json()["document"]
            plan = {**plan, **ALWAYS_OPEN, "channels": {**plan["channels"], "birthday": "sms"}}
            assert (await contacts.put(f"/v1/plans/{tier}", json=plan, headers=ADMIN)).is_success
        created = await people.post(
            "/v1/customers",
            json={
                "name": "Harbin Water Co.",
                "kind": "company",
                "account_manager": "mia",
                "timezone": "Asia/Shanghai",
                "birthday": born_in(10, 1980),  # within the planning window
                "consent": {"sms": "granted"},
            },
            headers=ADMIN,
        )
        customer_id = created.json()["id"]
        contact = await people.post(
            f"/v1/customers/{customer_id}/contacts",
            json={"name": "Li Wei", "phone": "+86 138 0000 0000", "decision_maker": True},
            headers=ADMIN,
        )
        assert contact.status_code == 201, contact.text

        async def tasks(kind: str | None = None) -> list[dict[str, Any]]:
            query = f"/v1/tasks?customer_id={customer_id}&limit=500"
            items = (await contacts.get(query, headers=ADMIN)).json()["items"]
            return [t for t in items if kind is None or t["kind"] == kind]

        (birthday,) = await eventually(lambda: tasks("birthday"), timeout=30)

        complaint = await desk.post(
            "/v1/complaints",
            json={"customer_id": customer_id, "channel": "phone", "description": "late"},
            headers=ADMIN,
        )
        complaint_id = complaint.json()["id"]

        async def outreach_knows_the_complaint() -> bool:
            sql = "SELECT count(*) AS n FROM complaint_states WHERE open"
            return bool((await query(outreach_db, sql))[0].n)

        await eventually(outreach_knows_the_complaint, timeout=30)
        # The birthday greeting falls due while the complaint is open: held, not sent.
        moved = await contacts.post(
            f"/v1/tasks/{birthday['id']}/reschedule",
            json={"due_at": dt.datetime.now(dt.UTC).isoformat()},
            headers=ADMIN,
        )
        assert moved.status_code == 200

        async def status_of_birthday() -> str | None:
            (task,) = await tasks("birthday")
            return task["status"] if task["status"] in ("held", "sent") else None

        assert await eventually(status_of_birthday, timeout=30) == "held"
        assert provider.requests == []

        for step in PATHS["confirmed"]:
            response = await desk.post(
                f"/v1/complaints/{complaint_id}/transitions",
                json={"to": step, **STEP_FIELDS[step]},
                headers=ADMIN,
            )
            assert response.status_code == 200, response.text
        (follow_up,) = await eventually(lambda: tasks("complaint_follow_up"), timeout=30)
        assert follow_up["basis"]["complaint_id"] == complaint_id
        # Released: the greeting goes out once the complaint is closed.
        assert await eventually(status_of_birthday, timeout=30) == "sent"
        assert provider.sent == {birthday["id"]: 1}

        # A re-rank puts the customer in the top tier: a hand-over to a dedicated manager.
        await publish_tier_changed(broker, topic_prefix + "tier.changed", customer_id)
        (hand_over,) = await eventually(lambda: tasks("hand_over"), timeout=30)
        assert hand_over["assignee"] == "mia"

        messages = await read_topic(broker, topic_prefix + "outreach.completed", 1)
        announced = orjson.loads(messages[0].value)
        assert announced["data"]["task_id"] == birthday["id"]
        assert announced["data"]["outcome"] == "sent"
