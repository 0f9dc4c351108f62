"""Profile tables: the customer's DNA and everything recorded about the customer."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import ScaledDecimal, UTCDateTime, new_metadata, utcnow
from shared.outbox import include_shared_tables

_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)


class Customer(Base):
    """One record per customer, company or person: what anyone serving them reads first."""

    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    external_ref: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Once erased: the SHA-256 of the reference the customer had, so that a re-import or a
    # new customer with it is refused instead of bringing the person back.
    erased_ref_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    industry: Mapped[str | None] = mapped_column(String(100), index=True)
    region: Mapped[str | None] = mapped_column(String(100), index=True)
    size: Mapped[str | None] = mapped_column(String(50))
    years_in_business: Mapped[int | None]
    industry_standing: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    credit_rating: Mapped[str | None] = mapped_column(String(20))
    credit_limit: Mapped[Decimal | None] = mapped_column(ScaledDecimal(2))
    credit_notes: Mapped[str | None] = mapped_column(Text)
    suppliers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str | None] = mapped_column(String(30))
    referred_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    stage: Mapped[str] = mapped_column(String(20), default="potential", index=True)
    relationship_level: Mapped[str] = mapped_column(String(30), default="vendor")
    account_manager: Mapped[str | None] = mapped_column(String(100), index=True)
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    birthday_calendar: Mapped[str] = mapped_column(
        String(10), default="gregorian", server_default="gregorian"
    )
    key_dates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[str | None] = mapped_column(Text)
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier: Mapped[str | None] = mapped_column(String(40), index=True)
    # When tiering gave that tier: an older `tier.changed` arriving later is ignored.
    tier_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Lowercased name and contact names, for the free-text filter.
    search_text: Mapped[str] = mapped_column(Text, default="")
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    # The revision of the customer's latest `customer.*` event (its ETag `version` counts
    # changes to this row; contacts changing also makes an event).
    revision: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (Index("ix_customers_created", "created_at", "id"),)


class CustomerChange(Base):
    """History of lifecycle stage and relationship level."""

    __tablename__ = "customer_changes"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    field: Mapped[str] = mapped_column(String(30))
    from_value: Mapped[str | None] = mapped_column(String(40))
    to_value: Mapped[str] = mapped_column(String(40))
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Who changed what about a customer, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    birthday_calendar: Mapped[str] = mapped_column(
        String(10), default="gregorian", server_default="gregorian"
    )
    decision_maker: Mapped[bool] = mapped_column(default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentChange(Base):
    """Every consent decision per channel; the latest per channel is the current state."""

    __tablename__ = "consent_changes"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    external_id: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[Decimal] = mapped_column(ScaledDecimal(2))
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[Decimal] = mapped_column(ScaledDecimal(3))
    unit: Mapped[str | None] = mapped_column(String(30))
    category: Mapped[str | None] = mapped_column(String(100))
    sku: Mapped[str | None] = mapped_column(String(100))
    purchased_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("customer_id", "external_id"),
        Index("ix_purchases_customer_time", "customer_id", "purchased_at", "id"),
        # Imports look purchases up by external id alone, a batch at a time.
        Index("ix_purchases_external_id", "external_id"),
    )


class Payment(Base):
    """Money actually collected."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    external_id: Mapped[str | None] = mapped_column(String(100))
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchases.id"))
    amount: Mapped[Decimal] = mapped_column(ScaledDecimal(2))
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str | None] = mapped_column(String(30))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("customer_id", "external_id"),
        Index("ix_payments_customer_time", "customer_id", "received_at", "id"),
    )


class Interaction(Base):
    """A visit, call, meeting, event, gift or survey."""

    __tablename__ = "interactions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(100))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"))
    satisfaction: Mapped[int | None]
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_interactions_customer_time", "customer_id", "at", "id"),)
