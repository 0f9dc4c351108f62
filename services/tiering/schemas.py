"""Tiering API schemas."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel


class Aggregates(BaseModel):
    revenue: Decimal
    quantity: Decimal
    purchase_count: int
    first_purchase_at: dt.datetime | None
    last_purchase_at: dt.datetime | None


class TierHistoryEntry(BaseModel):
    tier: str
    previous_tier: str | None
    reasons: list[str]
    changed_at: dt.datetime


class TierView(BaseModel):
    customer_id: uuid.UUID
    tier: str | None
    scores: dict[str, Any]
    reasons: list[str]
    history: list[TierHistoryEntry]
    aggregates: Aggregates
