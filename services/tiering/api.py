"""Tiering routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from services.tiering.schemas import TierView
from services.tiering.service import tiering_service
from shared.app import SessionDep
from shared.auth import Principal, require_roles

router = APIRouter(tags=["tiers"])

Reader = Annotated[Principal, Depends(require_roles("account_manager", "analyst", "agent"))]


@router.get("/customers/{customer_id}/tier", response_model=TierView)
async def get_customer_tier(customer_id: uuid.UUID, session: SessionDep, _: Reader) -> TierView:
    """The customer's tier, scores, reasons, history and aggregates."""
    return await tiering_service.tier_view(session, customer_id)
