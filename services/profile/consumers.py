"""Profile's event handlers: `{event type: handler}`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.service import profile_service
from shared.consumer import EventHandler
from shared.events import EventData, EventEnvelope, TierChanged


async def on_tier_changed(session: AsyncSession, event: EventEnvelope, data: EventData) -> None:
    assert isinstance(data, TierChanged)
    await profile_service.apply_tier_change(session, event.customer_id, data)


HANDLERS: dict[str, EventHandler] = {"tier.changed": on_tier_changed}
