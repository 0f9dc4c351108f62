"""`crm dlq list|replay`, as an operator runs it, against the real broker and a consumer:
a dead letter is shown with its error, replayed once the cause is mended, and applied once
however often it is replayed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.broker import EmbeddedBroker
from shared.db import create_engine
from shared.dlq import DeadLetter, replay
from shared.events import EventData, EventEnvelope
from tests.conftest import DatabaseFactory, eventually, read_topic
from tests.shared.test_consumer import (
    _count,
    _probe,
    consumer_settings,
    consuming,
    producer_for,
    purchase_envelope,
    send,
)


async def crm(tmp_path: Path, broker: EmbeddedBroker, prefix: str, *args: str) -> tuple[int, str]:
    """Run the `crm` command in its own process, as an operator would; exit code, stdout."""
    env = {
        **os.environ,
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CRM_KAFKA_TOPIC_PREFIX": prefix,
        "COLUMNS": "200",
    }
    env.pop("CRM_API_KEYS", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_dead_letters_are_listed_and_replayed_once_the_cause_is_mended(
    broker: EmbeddedBroker, new_database: DatabaseFactory, topic_prefix: str, tmp_path: Path
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix, consumer_max_attempts=2)
    engine = create_engine(settings.database_url)
    broken = True

    async def record(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
        if broken:
            raise RuntimeError("price list unavailable")
        await _probe(session, engine, "applied")

    customer = uuid.uuid4()
    event = purchase_envelope(customer)
    topic = settings.topic("purchase.recorded")
    async with consuming(settings, engine, {"purchase.recorded": record}):
        async with producer_for(broker) as producer:
            await send(producer, topic, customer, json.dumps(event).encode())
            await send(producer, topic, customer, b"{not json")

        async def listed() -> list[dict[str, Any]] | None:
            code, out = await crm(tmp_path, broker, topic_prefix, "dlq", "list", "--json")
            assert code == 0, out
            letters = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            return letters if len(letters) == 2 else None

        letters = await eventually(listed, timeout=60)
        by_id = {letter["event_id"]: letter for letter in letters}
        assert set(by_id) == {event["id"], None}
        dead = by_id[event["id"]]
        assert dead["original_topic"] == topic
        assert dead["consumer_group"] == settings.consumer_group
        assert dead["attempts"] == "2"
        assert "price list unavailable" in dead["error"]
        assert dead["replayable"] is True
        assert by_id[None]["replayable"] is False
        assert await _count(engine, "applied") == 0

        broken = False  # the cause is mended
        code, out = await crm(tmp_path, broker, topic_prefix, "dlq", "replay", "--all")
        assert code == 0, out
        assert "replayed 1 dead letters" in out
        assert "1 dead letters are not events" in out
        await eventually(lambda: _applied(engine, 1))

        # Replaying it again (by id) reaches the consumer, whose inbox drops the repeat.
        code, out = await crm(
            tmp_path, broker, topic_prefix, "dlq", "replay", "--event-id", event["id"]
        )
        assert code == 0, out
        marker = purchase_envelope(customer)  # sent after the repeat, on the same partition
        async with producer_for(broker) as producer:
            await send(producer, topic, customer, json.dumps(marker).encode())
        await eventually(lambda: _applied(engine, 2))
    assert await _count(engine, "applied") == 2  # the replayed event once, the marker once
    await engine.dispose()


async def test_replay_names_an_event_that_is_not_dead_lettered_and_changes_nothing(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    missing = str(uuid.uuid4())
    code, out = await crm(tmp_path, broker, topic_prefix, "dlq", "replay", "--event-id", missing)
    assert code == 1
    assert f"not in a dead-letter topic: {missing}" in out


async def test_an_unreachable_broker_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    class Nowhere:
        bootstrap = "127.0.0.1:9"

    code, out = await crm(tmp_path, Nowhere(), "x.", "dlq", "list")  # type: ignore[arg-type]
    assert code == 1
    assert "Kafka at 127.0.0.1:9 did not answer" in out
    assert "Traceback" not in out


async def _applied(engine: Any, expected: int) -> bool:
    return await _count(engine, "applied") >= expected


async def test_an_event_several_groups_dead_lettered_is_replayed_once(
    broker: EmbeddedBroker, topic_prefix: str, new_database: DatabaseFactory
) -> None:
    settings = await consumer_settings(broker, new_database, topic_prefix)
    topic = settings.topic("purchase.recorded")
    event = json.dumps(purchase_envelope(uuid.uuid4())).encode()
    letters = [
        DeadLetter(f"{topic}.dlq", 0, offset, b"k", event, {"x-consumer-group": group})
        for offset, group in enumerate(["tiering", "outreach", "complaints"])
    ]
    assert await replay(settings, letters) == 1
    [replayed] = await read_topic(broker, topic, 1)
    assert replayed.value == event
    assert dict(replayed.headers)["x-replayed-from"] == f"{topic}.dlq:0:0".encode()
