"""Profile's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.service import profile_service
from shared.consumer import BulkHandler, EventHandler, one_at_a_time
from shared.events import EventData, EventEnvelope, tier_changes


async def on_tier_changes(
    session: AsyncSession, events: list[tuple[EventEnvelope, EventData]]
) -> None:
    await profile_service.apply_tier_changes(session, tier_changes(events))


HANDLERS: dict[str, EventHandler] = {"tier.changed": one_at_a_time(on_tier_changes)}
# A poll's tier changes are one statement, not a read and a write per event.
BULK_HANDLERS: dict[str, BulkHandler] = {"tier.changed": on_tier_changes}
