"""Profile API schemas (in and out)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Channel, ConsentState
from shared.fields import (
    CurrencyCode,
    Label,
    Money,
    Name,
    PastTimestamp,
    Quantity,
    ShortLabel,
    TimeZoneName,
)

Kind = Literal["company", "person"]
Stage = Literal["potential", "target", "cooperating", "lapsed"]
RelationshipLevel = Literal["vendor", "partner", "strategic_alliance"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerCreate(StrictModel):
    name: Name
    kind: Kind
    external_ref: Label | None = None
    industry: Label | None = None
    region: Label | None = None
    timezone: TimeZoneName | None = None
    stage: Stage = "potential"
    relationship_level: RelationshipLevel = "vendor"
    account_manager: Label | None = None
    referred_by: uuid.UUID | None = None
    birthday: dt.date | None = None
    consent: dict[Channel, ConsentState] = Field(default_factory=dict)


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    external_ref: str | None
    name: str | None
    kind: Kind
    industry: str | None
    region: str | None
    timezone: str | None
    stage: Stage
    relationship_level: RelationshipLevel
    account_manager: str | None
    referred_by: uuid.UUID | None
    birthday: dt.date | None
    consent: dict[str, str]
    tier: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int


class PurchaseCreate(StrictModel):
    amount: Money = Field(description="Decimal string in the base currency; negative for a refund.")
    currency: CurrencyCode
    quantity: Quantity = Decimal(1)
    unit: ShortLabel | None = None
    category: Label | None = None
    sku: Label | None = None
    purchased_at: PastTimestamp
    external_id: Label | None = None


class PurchaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    external_id: str | None
    amount: Decimal
    currency: str
    quantity: Decimal
    unit: str | None
    category: str | None
    sku: str | None
    purchased_at: dt.datetime
    created_at: dt.datetime
