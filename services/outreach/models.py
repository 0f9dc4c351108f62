"""Outreach tables: the local view of each customer (from events), service plans per tier,
the company calendar, and the tasks: every contact planned, with its guardrail decisions
and its delivery."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata
from shared.outbox import include_shared_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)


class Recipient(Base):
    """What outreach knows of a customer, from `customer.*` and `tier.changed`. Each field
    keeps the stamp (revision, time) of the event that set it (`field_times`), so an older
    event arriving later changes nothing."""

    __tablename__ = "recipients"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    birthday_calendar: Mapped[str | None] = mapped_column(String(10))
    key_dates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Key contacts: name, birthday (and its calendar), phone, email, decision maker.
    contacts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    consent: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    account_manager: Mapped[str | None] = mapped_column(String(100), index=True)
    tier: Mapped[str | None] = mapped_column(String(40))
    field_times: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ComplaintState(Base):
    """A complaint as outreach follows it: open or not, as of the latest event about it
    (events arrive in any order: an older one never overrides a newer one)."""

    __tablename__ = "complaint_states"

    complaint_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    open: Mapped[bool]
    state_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PurchaseCycle(Base):
    """A customer's purchases of one category, as far as the cycle needs them: how many,
    the first and the last (order-independent: events may arrive in any order)."""

    __tablename__ = "purchase_cycles"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    purchases: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ServicePlan(Base):
    """The service plan of a tier (`*`: every tier without one of its own)."""

    __tablename__ = "service_plans"

    tier: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(100))


class CalendarEntry(Base):
    """A company date or a club event, with the tiers it invites."""

    __tablename__ = "calendar_entries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    on: Mapped[dt.date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    channel: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class Task(Base):
    """One contact with a customer: why (kind, occasion), how (channel), when (due), who
    (assignee), and what happened (status, decisions, delivery).

    (customer, occasion) is unique: an occasion (a birthday in a given year, a revisit
    window, a repurchase of a category after a given purchase) makes one task, never two.
    """

    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(30))
    occasion: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    marketing: Mapped[bool]
    priority: Mapped[int] = mapped_column(SmallInteger)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    assignee: Mapped[str | None] = mapped_column(String(100), index=True)
    # Why the task is due then (e.g. the repurchase prediction and what it rests on).
    basis: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Every guardrail decision, with its moment and reason.
    decisions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    # While a delivery is under way: a replica that finds the lease expired tries again
    # (with the same idempotency key, so the provider sends once).
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    provider_response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(20))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the contact went out (automated) or was handed to its assignee (by hand): what
    # budgets and the one-contact-a-day rule count.
    contacted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("customer_id", "occasion", name="uq_tasks_customer_occasion"),
        Index("ix_tasks_due", "status", "due_at"),
        Index("ix_tasks_customer_due", "customer_id", "due_at"),
        Index("ix_tasks_customer_contacted", "customer_id", "contacted_at"),
    )


class WriterGuard(Base):
    """One row per guarded job. On SQLite (one writer at a time, no SKIP LOCKED) a
    dispatch transaction writes its row first, so it holds the write lock before it reads
    the due tasks, and two dispatchers never claim the same task."""

    __tablename__ = "writer_guards"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    taken_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class FeedToken(Base):
    """An assignee's secret calendar-feed address (stored as a digest), rotatable and
    revocable: calendar apps cannot send an API key."""

    __tablename__ = "feed_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    assignee: Mapped[str] = mapped_column(String(100), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
