"""Profile API schemas (in and out)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from shared.events import Channel, ConsentState
from shared.fields import (
    BaseCurrency,
    Day,
    JsonInt,
    Label,
    Money,
    Name,
    PastTimestamp,
    Quantity,
    ShortLabel,
    TimeZoneName,
    free_json_problem,
)

Kind = Literal["company", "person"]
Stage = Literal["potential", "target", "cooperating", "lapsed"]
RelationshipLevel = Literal["vendor", "partner", "strategic_alliance"]
Source = Literal["yellow_pages", "media", "exhibition", "industry_association", "referral", "other"]
InteractionKind = Literal["visit", "call", "meeting", "event", "gift", "survey"]
Satisfaction = Annotated[JsonInt, Field(ge=1, le=5)]
Notes = Annotated[str, StringConstraints(max_length=4000)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()\-]{5,30}$")]
PastDate = Annotated[Day, Field(ge=dt.date(1850, 1, 1))]
# The calendar a birthday or key date is celebrated in: a lunar one comes back on the
# same lunar month and day each year (outreach plans it so).
CalendarKind = Literal["gregorian", "lunar"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_future(value: Day | None) -> Day | None:
    if value is not None and value > dt.datetime.now(dt.UTC).date():
        raise ValueError("lies in the future")
    return value


class Credit(StrictModel):
    rating: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = None
    limit: Annotated[Money, Field(ge=0)] | None = None
    solvency_notes: Notes | None = None


class Supplier(StrictModel):
    name: Name
    satisfaction: Satisfaction | None = None
    notes: Notes | None = None


class KeyDate(StrictModel):
    label: Label
    date: Day
    calendar: CalendarKind = "gregorian"


Attributes = Annotated[dict[str, Any], Field(max_length=50)]


def _small_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        for key, item in value.items():
            if len(key) > 100:
                raise ValueError("attribute names are at most 100 characters")
            problem = free_json_problem(item)
            if problem:
                raise ValueError(f"attribute {key!r} {problem}")
            if len(str(item)) > 1000:
                raise ValueError(f"attribute {key!r} is over 1000 characters")
    return value


class CustomerFields(StrictModel):
    """Fields a client may set on create and change with PATCH."""

    name: Name
    kind: Kind
    external_ref: Label | None = None
    industry: Label | None = None
    region: Label | None = None
    size: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = None
    years_in_business: Annotated[JsonInt, Field(ge=0, le=1000)] | None = None
    industry_standing: Label | None = None
    timezone: TimeZoneName | None = None
    credit: Credit | None = None
    suppliers: Annotated[list[Supplier], Field(max_length=50)] = Field(default_factory=list)
    source: Source | None = None
    referred_by: uuid.UUID | None = None
    stage: Stage = "potential"
    relationship_level: RelationshipLevel = "vendor"
    account_manager: Label | None = None
    birthday: PastDate | None = None
    birthday_calendar: CalendarKind = "gregorian"
    key_dates: Annotated[list[KeyDate], Field(max_length=50)] = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)
    notes: Notes | None = None

    _check_birthday = field_validator("birthday")(_not_future)
    _check_attributes = field_validator("attributes")(_small_attributes)


class CustomerCreate(CustomerFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Acme Trading Co.",
                    "kind": "company",
                    "external_ref": "ACME-1",
                    "industry": "wholesale",
                    "region": "East China",
                    "timezone": "Asia/Shanghai",
                    "source": "exhibition",
                    "stage": "cooperating",
                    "relationship_level": "partner",
                    "account_manager": "mia",
                    "key_dates": [{"label": "founded", "date": "2008-03-18"}],
                    "attributes": {"segment": "retail chains"},
                    "consent": {"email": "granted", "sms": "withdrawn"},
                }
            ]
        }
    )

    consent: dict[Channel, ConsentState] = Field(default_factory=dict)


class CustomerPatch(StrictModel):
    """Any subset of the customer's fields; `null` clears an optional one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"stage": "cooperating", "account_manager": "noah", "notes": None}]
        }
    )

    name: Name | None = None
    kind: Kind | None = None
    external_ref: Label | None = None
    industry: Label | None = None
    region: Label | None = None
    size: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = None
    years_in_business: Annotated[JsonInt, Field(ge=0, le=1000)] | None = None
    industry_standing: Label | None = None
    timezone: TimeZoneName | None = None
    credit: Credit | None = None
    suppliers: Annotated[list[Supplier], Field(max_length=50)] | None = None
    source: Source | None = None
    referred_by: uuid.UUID | None = None
    stage: Stage | None = None
    relationship_level: RelationshipLevel | None = None
    account_manager: Label | None = None
    birthday: PastDate | None = None
    birthday_calendar: CalendarKind | None = None
    key_dates: Annotated[list[KeyDate], Field(max_length=50)] | None = None
    attributes: Attributes | None = None
    notes: Notes | None = None

    _check_birthday = field_validator("birthday")(_not_future)
    _check_attributes = field_validator("attributes")(_small_attributes)


# Fields that may not be cleared with null.
REQUIRED_ON_PATCH = frozenset({"name", "kind", "stage", "relationship_level", "birthday_calendar"})


class CustomerOut(BaseModel):
    id: uuid.UUID
    external_ref: str | None
    name: str | None
    kind: Kind
    industry: str | None
    region: str | None
    size: str | None
    years_in_business: JsonInt | None
    industry_standing: str | None
    timezone: str | None
    credit: Credit
    suppliers: list[Supplier]
    source: Source | None
    referred_by: uuid.UUID | None
    stage: Stage
    relationship_level: RelationshipLevel
    account_manager: str | None
    birthday: Day | None
    birthday_calendar: CalendarKind
    key_dates: list[KeyDate]
    attributes: dict[str, Any]
    notes: str | None
    consent: dict[str, str]
    tier: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: JsonInt


class StageChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    field: str
    from_value: str | None
    to_value: str
    changed_by: str
    changed_at: dt.datetime


class CustomerDetail(CustomerOut):
    history: list[StageChangeOut]


class ContactCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Li Wei",
                    "role": "purchasing director",
                    "phone": "+86 21 5555 0100",
                    "email": "li.wei@acme.example",
                    "birthday": "1980-03-18",
                    "birthday_calendar": "lunar",
                    "decision_maker": True,
                }
            ]
        }
    )

    name: Name
    role: Label | None = None
    phone: Phone | None = None
    email: EmailStr | None = None
    birthday: PastDate | None = None
    birthday_calendar: CalendarKind = "gregorian"
    decision_maker: StrictBool = False
    notes: Notes | None = None

    _check_birthday = field_validator("birthday")(_not_future)


class ContactPatch(StrictModel):
    """Any subset of a contact's fields; `null` clears an optional one."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "general manager", "phone": None}]}
    )

    name: Name | None = None
    role: Label | None = None
    phone: Phone | None = None
    email: EmailStr | None = None
    birthday: PastDate | None = None
    birthday_calendar: CalendarKind | None = None
    decision_maker: StrictBool | None = None
    notes: Notes | None = None

    _check_birthday = field_validator("birthday")(_not_future)


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    role: str | None
    phone: str | None
    email: str | None
    birthday: Day | None
    birthday_calendar: CalendarKind
    decision_maker: StrictBool
    notes: str | None
    created_at: dt.datetime


class ConsentUpdate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"email": "granted", "sms": "withdrawn", "source": "signed form, 2026-11-30"}
            ]
        }
    )

    sms: ConsentState | None = None
    email: ConsentState | None = None
    phone: ConsentState | None = None
    letter: ConsentState | None = None
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ConsentChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    state: ConsentState
    source: str | None
    recorded_by: str
    at: dt.datetime


class ConsentOut(BaseModel):
    customer_id: uuid.UUID
    consent: dict[str, str]
    history: list[ConsentChangeOut]


class PurchaseCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": "1299.50",
                    "currency": "CNY",
                    "quantity": "2",
                    "unit": "box",
                    "category": "tea",
                    "sku": "TEA-OOLONG-500",
                    "purchased_at": "2026-11-30T10:15:00+08:00",
                    "external_id": "ORDER-2026-0042",
                }
            ]
        }
    )

    amount: Money = Field(
        description="Decimal string in the base currency; zero for a free item, negative "
        "for a refund."
    )
    currency: BaseCurrency
    quantity: Quantity = Decimal("1.000")
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


class PaymentCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": "1299.50",
                    "currency": "CNY",
                    "received_at": "2026-12-01T09:00:00+08:00",
                    "method": "bank transfer",
                    "external_id": "PAY-2026-0042",
                }
            ]
        }
    )

    amount: Annotated[Money, Field(gt=0)]
    currency: BaseCurrency
    received_at: PastTimestamp
    purchase_id: uuid.UUID | None = None
    method: ShortLabel | None = None
    external_id: Label | None = None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    external_id: str | None
    purchase_id: uuid.UUID | None
    amount: Decimal
    currency: str
    method: str | None
    received_at: dt.datetime
    created_at: dt.datetime


class InteractionCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "visit",
                    "at": "2026-11-28T15:00:00+08:00",
                    "by": "mia",
                    "satisfaction": 4,
                    "notes": "Walked through the spring catalogue.",
                }
            ]
        }
    )

    kind: InteractionKind
    at: PastTimestamp
    by: Label | None = Field(default=None, description="Who; defaults to the caller.")
    contact_id: uuid.UUID | None = None
    satisfaction: Satisfaction | None = None
    notes: Notes | None = None


class InteractionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    kind: InteractionKind
    at: dt.datetime
    by: str
    contact_id: uuid.UUID | None
    satisfaction: JsonInt | None
    notes: str | None
    created_at: dt.datetime


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor: str
    action: str
    changes: dict[str, Any]
    at: dt.datetime


class ReferralOut(BaseModel):
    customer_id: uuid.UUID
    name: str | None
    referred_by: uuid.UUID
    depth: JsonInt
    revenue: Decimal
    purchase_count: JsonInt


class ReferralsOut(BaseModel):
    customer_id: uuid.UUID
    direct: JsonInt
    total: JsonInt
    revenue: Decimal = Field(
        description="What everyone referred, directly or further down, bought."
    )
    hidden: JsonInt = Field(
        0, description="Referred customers left out of the list: not the caller's to see."
    )
    referrals: list[ReferralOut]
