"""A complaint's life over the real broker: profile's customer reaches complaints' view; the
SLA timer escalates a late complaint by itself; opened, escalated and closed go out on
Kafka; a purchase after closure (from profile) counts as the customer coming back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from services.complaints.app import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.profile.app import create_app as create_profile
from services.profile.settings import ProfileSettings
from shared.broker import EmbeddedBroker
from tests.complaints.conftest import STEP_FIELDS
from tests.complaints.test_workflow import PATHS
from tests.conftest import (
    ADMIN,
    MANAGER,
    DatabaseFactory,
    eventually,
    read_topic,
    running,
    service_settings,
)

# Around the clock; answering within 1.5 seconds, resolving within an hour.
FAST_POLICY: dict[str, Any] = {
    "targets": [
        {"severity": s, "respond_minutes": 0.025, "resolve_minutes": 60}
        for s in ("minor", "major", "critical")
    ],
    "escalation": [{"name": "team lead", "assign_to": "tina"}],
}


async def test_a_complaint_from_receipt_to_return(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str
) -> None:
    profile = create_profile(
        service_settings(
            ProfileSettings,
            database_url=await new_database("profile"),
            bootstrap=broker.bootstrap,
            prefix=topic_prefix,
        )
    )
    complaints = create_complaints(
        service_settings(
            ComplaintsSettings,
            database_url=await new_database("complaints"),
            bootstrap=broker.bootstrap,
            prefix=topic_prefix,
        )
    )
    async with running(profile) as people, running(complaints) as desk:
        customer = await people.post(
            "/v1/customers",
            json={"name": "Harbin Water Co.", "kind": "company", "account_manager": "mia"},
            headers=ADMIN,
        )
        assert customer.status_code == 201, customer.text
        customer_id = customer.json()["id"]
        assert (await desk.put("/v1/sla-policies", json=FAST_POLICY, headers=ADMIN)).is_success

        async def opened_by_mia() -> dict[str, Any] | None:
            # Mia sees her customer's complaints once customer.created has arrived.
            response = await desk.post(
                "/v1/complaints",
                json={"customer_id": customer_id, "channel": "phone", "description": "late"},
                headers=MANAGER,
            )
            return response.json() if response.status_code == 201 else None

        complaint = await eventually(opened_by_mia, timeout=30)
        cid = complaint["id"]

        async def escalated() -> dict[str, Any] | None:
            state = (await desk.get(f"/v1/complaints/{cid}", headers=ADMIN)).json()
            return state if state["escalation_level"] == 1 else None

        state = await eventually(escalated, timeout=15)
        assert state["assignee"] == "tina" and state["owner"] == "mia"

        for step in PATHS["confirmed"]:
            response = await desk.post(
                f"/v1/complaints/{cid}/transitions",
                json={"to": step, **STEP_FIELDS[step]},
                headers=MANAGER,
            )
            assert response.status_code == 200, (step, response.text)

        prefix = topic_prefix
        found = {
            topic: [orjson.loads(m.value) for m in await read_topic(broker, prefix + topic, n)]
            for topic, n in (
                ("complaint.opened", 1),
                ("complaint.escalated", 1),
                ("complaint.closed", 1),
                ("complaint.transitioned", 5),
            )
        }
        (opened,) = found["complaint.opened"]
        assert opened["customer_id"] == customer_id and opened["data"]["owner"] == "mia"
        assert opened["data"]["complaint_id"] == cid
        (escalation,) = found["complaint.escalated"]
        assert escalation["data"]["level"] == 1 and escalation["data"]["breached"] == "respond"
        (closed,) = found["complaint.closed"]
        assert closed["data"]["satisfaction"] == 5
        assert [e["data"]["to_status"] for e in found["complaint.transitioned"]] == PATHS[
            "confirmed"
        ]

        # The customer buys again: profile's purchase.recorded marks the return.
        bought = await people.post(
            f"/v1/customers/{customer_id}/purchases",
            json={
                "amount": "99.00",
                "currency": "CNY",
                "purchased_at": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat(),
            },
            headers=ADMIN,
        )
        assert bought.status_code == 201, bought.text

        async def came_back() -> dict[str, Any] | None:
            stats = (await desk.get("/v1/complaints/stats", headers=ADMIN)).json()["overall"]
            return stats if stats["return_rate"]["returned"] == 1 else None

        stats = await eventually(came_back, timeout=30)
        assert stats["return_rate"]["rate"] == 1.0
