"""Delivery through a real local HTTP provider: signed requests with an idempotency key,
consent checked at send time, retries after failures and timeouts, a restart mid-dispatch
and two dispatchers racing: nothing sent twice (counted at the provider)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx

from services.outreach import repository as repo
from services.outreach.channels import ClientPool, HttpProvider
from services.outreach.dispatcher import Dispatcher
from shared.db import create_engine, session_factory
from tests.conftest import ADMIN, query
from tests.outreach.conftest import SECRET, Events, FakeProvider, dispatch, due_now, tasks_of


async def revisit_by_sms(
    outreach: httpx.AsyncClient, events: Events, **fields: Any
) -> tuple[uuid.UUID, dict[str, Any]]:
    """A customer whose plan revisits by SMS, with that revisit due now."""
    plan = (await outreach.get("/v1/plans/*", headers=ADMIN)).json()["document"]
    plan["channels"] = {**plan["channels"], "revisit": "sms", "holiday": "sms"}
    assert (await outreach.put("/v1/plans/*", json=plan, headers=ADMIN)).status_code == 200
    customer = await events.customer(**fields)
    await outreach.post(f"/v1/planning?customer_id={customer}", headers=ADMIN)
    (revisit,) = [t for t in await tasks_of(outreach, customer) if t["kind"] == "revisit"]
    assert revisit["channel"] == "sms", revisit
    await due_now(outreach, revisit["id"])
    return customer, revisit


async def task(outreach: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await outreach.get(f"/v1/tasks/{task_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def completed_events(url: str) -> list[dict[str, Any]]:
    rows = await query(
        url, "SELECT payload FROM outbox WHERE event_type = 'outreach.completed' ORDER BY id"
    )
    return [json.loads(row.payload)["data"] for row in rows]


async def test_a_due_sms_is_signed_sent_once_and_announced(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    customer, revisit = await revisit_by_sms(outreach, events)
    assert await dispatch(outreach_db, f"{provider.url}/ok") == 1
    done = await task(outreach, revisit["id"])
    assert done["status"] == "sent" and done["attempts"] == 1
    assert [d["decision"] for d in done["decisions"]][-2:] == ["go", "sent"]
    ((key, message),) = provider.requests
    assert key == revisit["id"] and provider.bad_signatures == 0
    assert message["to"] == "+86 138 0000 0000" and message["kind"] == "revisit"
    assert message["customer_id"] == str(customer)
    (announced,) = await completed_events(outreach_db)
    assert announced["outcome"] == "sent" and announced["task_id"] == revisit["id"]
    scheduled = await query(
        outreach_db, "SELECT count(*) AS n FROM outbox WHERE event_type = 'outreach.scheduled'"
    )
    assert scheduled[0].n >= 1
    # Nothing is due any more: a second pass sends nothing.
    assert await dispatch(outreach_db, f"{provider.url}/ok") == 0
    assert len(provider.requests) == 1


async def test_consent_withdrawn_after_planning_skips_the_marketing(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    customer = await events.customer(birthday="1980-06-01")
    (birthday,) = [t for t in await tasks_of(outreach, customer) if t["kind"] == "birthday"]
    assert birthday["marketing"]
    await events.send(customer, "customer.updated", {"consent": {"sms": "withdrawn"}})
    await due_now(outreach, birthday["id"])
    await dispatch(outreach_db, f"{provider.url}/ok")
    skipped = await task(outreach, birthday["id"])
    assert skipped["status"] == "skipped"
    assert "no consent for sms marketing (withdrawn)" in skipped["decisions"][-1]["reason"]
    assert provider.requests == []
    (announced,) = await completed_events(outreach_db)
    assert announced["outcome"] == "skipped" and "consent" in announced["reason"]


async def test_a_failure_then_success_is_retried_with_the_same_key(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    _, revisit = await revisit_by_sms(outreach, events)
    await dispatch(outreach_db, f"{provider.url}/flaky")
    waiting = await task(outreach, revisit["id"])
    assert waiting["status"] == "deferred" and waiting["decisions"][-1]["decision"] == "retry"
    retry_at = dt.datetime.fromisoformat(waiting["due_at"].replace("Z", "+00:00"))
    assert await dispatch(outreach_db, f"{provider.url}/flaky", retry_at) == 1
    sent = await task(outreach, revisit["id"])
    assert sent["status"] == "sent" and sent["attempts"] == 2
    assert [key for key, _ in provider.requests] == [revisit["id"], revisit["id"]]
    assert provider.sent == {revisit["id"]: 1}
    assert [e["outcome"] for e in await completed_events(outreach_db)] == ["sent"]


async def test_a_timeout_is_retried_and_gives_up_after_the_last_attempt(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    _, revisit = await revisit_by_sms(outreach, events)
    await dispatch(outreach_db, f"{provider.url}/slow", timeout_s=0.2, max_attempts=2)
    first = await task(outreach, revisit["id"])
    assert first["status"] == "deferred" and "TimeoutError" in first["decisions"][-1]["reason"]
    later = dt.datetime.fromisoformat(first["due_at"].replace("Z", "+00:00"))
    await dispatch(outreach_db, f"{provider.url}/slow", later, timeout_s=0.2, max_attempts=2)
    failed = await task(outreach, revisit["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert [e["outcome"] for e in await completed_events(outreach_db)] == ["failed"]


async def test_a_refusal_is_final(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    _, revisit = await revisit_by_sms(outreach, events)
    await dispatch(outreach_db, f"{provider.url}/refuse")
    failed = await task(outreach, revisit["id"])
    assert failed["status"] == "failed" and "422" in failed["decisions"][-1]["reason"]
    assert failed["provider_response"] == {"status": 422, "error": "unknown number"}


async def test_a_restart_between_sending_and_recording_does_not_send_twice(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    """The provider accepted, then the replica stopped before recording it: the lease runs
    out, the next pass sends again with the same key, and the provider sends once."""
    _, revisit = await revisit_by_sms(outreach, events)
    now = dt.datetime.now(dt.UTC)
    engine = create_engine(outreach_db)
    async with ClientPool(2) as clients:
        crashed = Dispatcher(
            session_factory(engine), HttpProvider(f"{provider.url}/ok", SECRET, 2.0, clients)
        )
        async with crashed.sessions() as session, session.begin():
            due = await repo.tasks.due(session, now, 10)
            claimed = await crashed._decide(session, due, now)
        await crashed._deliver(claimed)  # ... and the process dies before _record
    await engine.dispose()
    assert provider.sent == {revisit["id"]: 1}
    in_flight = await task(outreach, revisit["id"])
    assert in_flight["status"] == "sending"
    # Before the lease runs out nobody touches it; after, the next replica finishes it.
    assert await dispatch(outreach_db, f"{provider.url}/ok", now + dt.timedelta(seconds=5)) == 0
    assert await dispatch(outreach_db, f"{provider.url}/ok", now + dt.timedelta(seconds=31)) == 1
    sent = await task(outreach, revisit["id"])
    assert sent["status"] == "sent" and sent["provider_response"]["duplicate"] is True
    assert len(provider.requests) == 2 and provider.sent == {revisit["id"]: 1}
    assert [e["outcome"] for e in await completed_events(outreach_db)] == ["sent"]


async def test_two_dispatchers_racing_send_each_task_once(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    revisits = [(await revisit_by_sms(outreach, events))[1] for _ in range(12)]
    await asyncio.gather(
        dispatch(outreach_db, f"{provider.url}/ok"), dispatch(outreach_db, f"{provider.url}/ok")
    )
    # What one replica skipped (locked) the other sent; a last pass finds nothing left.
    await dispatch(outreach_db, f"{provider.url}/ok")
    assert len(provider.requests) == 12
    assert provider.sent == {r["id"]: 1 for r in revisits}
    statuses = {(await task(outreach, r["id"]))["status"] for r in revisits}
    assert statuses == {"sent"}


async def test_no_provider_configured_fails_with_the_reason(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str
) -> None:
    _, revisit = await revisit_by_sms(outreach, events)
    await dispatch(outreach_db, None)
    failed = await task(outreach, revisit["id"])
    assert failed["status"] == "failed"
    assert "CRM_OUTREACH_PROVIDER_URL" in failed["decisions"][-1]["reason"]


async def test_a_batch_endpoint_sends_each_message_once_with_its_own_answer(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    revisits = [(await revisit_by_sms(outreach, events))[1] for _ in range(5)]
    assert await dispatch(outreach_db, f"{provider.url}/batch/ok", provider_batch=2) == 5
    assert provider.batches == 3 and provider.bad_signatures == 0  # 2 + 2 + 1
    assert provider.sent == {r["id"]: 1 for r in revisits}
    for revisit in revisits:
        sent = await task(outreach, revisit["id"])
        assert sent["status"] == "sent" and sent["provider_response"]["message_id"]
    assert [e["outcome"] for e in await completed_events(outreach_db)] == ["sent"] * 5


async def test_a_batch_answer_refusing_one_and_forgetting_another(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    """One message refused stays refused; one left out of the answer is tried again with
    its key, and the gateway, which had sent it, does not send it twice."""
    revisits = [(await revisit_by_sms(outreach, events))[1] for _ in range(3)]
    await dispatch(outreach_db, f"{provider.url}/batch/mixed", provider_batch=10)
    ((refused_key, _), (forgotten_key, _), _) = provider.requests
    refused = await task(outreach, refused_key)
    assert refused["status"] == "failed" and "barred" in refused["decisions"][-1]["reason"]
    forgotten = await task(outreach, forgotten_key)
    assert forgotten["status"] == "deferred" and "not in the answer" in str(forgotten["decisions"])
    retry_at = dt.datetime.fromisoformat(forgotten["due_at"].replace("Z", "+00:00"))
    assert (
        await dispatch(outreach_db, f"{provider.url}/batch/mixed", retry_at, provider_batch=10) == 1
    )
    assert (await task(outreach, forgotten_key))["status"] == "sent"
    assert provider.sent == {r["id"]: 1 for r in revisits if r["id"] != refused_key}


async def test_a_batch_refused_whole_is_retried_whole(
    outreach: httpx.AsyncClient, events: Events, outreach_db: str, provider: FakeProvider
) -> None:
    revisits = [(await revisit_by_sms(outreach, events))[1] for _ in range(2)]
    await dispatch(outreach_db, f"{provider.url}/batch/down", provider_batch=10)
    waiting = [await task(outreach, r["id"]) for r in revisits]
    assert {t["status"] for t in waiting} == {"deferred"} and provider.sent == {}
    retry_at = max(dt.datetime.fromisoformat(t["due_at"].replace("Z", "+00:00")) for t in waiting)
    assert await dispatch(outreach_db, f"{provider.url}/batch/ok", retry_at, provider_batch=10) == 2
    assert provider.sent == {r["id"]: 1 for r in revisits}
