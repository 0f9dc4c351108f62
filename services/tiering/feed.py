"""`tier.changed` straight from the tier history: the history table is the outbox of its
own event.

A first ranking changes a million tiers at once; writing each change twice, as a history
row and as an outbox row with its reasons in words, cost more than the ranking itself.
Instead the relay reads the history rows past this feed's cursor in id order, makes each
event from the row's figures (the same words the tier view shows), and moves the cursor
once Kafka has them. Every writer of the history holds the history lock (service.py)
until it commits, so rows become visible in id order and the cursor never passes a row
still being written (a ranking's rows, written through a second connection, become
visible when the ranking's own row commits: `history_rows`).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import TIER_HISTORY, FeedCursor, history_rows
from services.tiering.ranking.explain import explain_assignment
from services.tiering.schemas import PolicyDocument
from services.tiering.service import PRODUCER, policy_document, tier_changed_json
from shared.outbox import PendingEvent, envelope_json

FEED = "tier.changed"


class TierChangeFeed:
    """An event source for the outbox relay: history rows not yet published."""

    def __init__(self) -> None:
        self.documents: dict[uuid.UUID, PolicyDocument] = {}  # policies never change

    name = FEED

    async def backlog(self, session: AsyncSession) -> tuple[int, dt.datetime | None]:
        last = await session.scalar(select(FeedCursor.last_id).where(FeedCursor.feed == FEED))
        waiting = history_rows().where(TIER_HISTORY.c.id > (last or 0)).subquery()
        row = (await session.execute(select(func.count(), func.min(waiting.c.changed_at)))).one()
        return int(row[0]), row[1]

    async def pending(self, session: AsyncSession, limit: int) -> list[PendingEvent]:
        last = await session.scalar(select(FeedCursor.last_id).where(FeedCursor.feed == FEED))
        rows = await session.execute(
            history_rows()
            .where(TIER_HISTORY.c.id > (last or 0))
            .order_by(TIER_HISTORY.c.id)
            .limit(limit)
        )
        events = []
        for row in rows.mappings().all():
            figures, reasons = explain_assignment(
                row, await policy_document(session, row["policy_id"], self.documents)
            )
            data = tier_changed_json(
                row["previous_tier"],
                row["tier"],
                row["policy_id"],
                row["policy_version"],
                figures,
                reasons,
                row["changed_at"],
            )
            payload = envelope_json(
                event_id=row["event_id"],
                event_type=FEED,
                occurred_at=row["changed_at"],
                producer=PRODUCER,
                customer_id=row["customer_id"],
                correlation_id=row["correlation_id"],
                data=data,
            )
            events.append(PendingEvent(row["id"], FEED, str(row["customer_id"]), payload))
        return events

    async def mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        await session.execute(
            update(FeedCursor).where(FeedCursor.feed == FEED).values(last_id=max(ids))
        )
