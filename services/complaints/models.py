"""Complaints tables: complaints and their history, SLA policies, escalations, and what
events taught us about customers (tier, account manager)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, new_metadata
from shared.outbox import include_shared_tables

_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)


class KnownCustomer(Base):
    """The local view of a customer, from `customer.*` and `tier.changed`. Each field keeps
    the stamp of the event that set it (`field_stamps`, shared.revisions; the tier its
    time), so an older event arriving later changes nothing."""

    __tablename__ = "known_customers"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(40))
    tier_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    account_manager: Mapped[str | None] = mapped_column(String(100), index=True)
    account_manager_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64))
    timezone_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    field_stamps: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Complaint(Base):
    """A complaint, its place in the workflow, and its SLA clock as last computed."""

    __tablename__ = "complaints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    channel: Mapped[str] = mapped_column(String(30))
    category: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(10))
    # The customer's tier when the complaint arrived: its SLA targets depend on it.
    tier: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(30))
    paused_from: Mapped[str | None] = mapped_column(String(30))
    # First-contact owner (首问负责制): the receiver, accountable until the customer
    # confirms; changes only by an explicit hand-over.
    owner: Mapped[str] = mapped_column(String(100), index=True)
    received_by: Mapped[str] = mapped_column(String(100))
    assignee: Mapped[str | None] = mapped_column(String(100), index=True)
    remedy: Mapped[str | None] = mapped_column(Text)
    remedy_by: Mapped[str | None] = mapped_column(String(100))
    customer_told: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0)
    reopen_count: Mapped[int] = mapped_column(SmallInteger, default=0)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    # The SLA clock, recomputed from the history at every change and timer.
    respond_by: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolve_by: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    responded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    respond_breached: Mapped[bool] = mapped_column(default=False)
    resolve_breached: Mapped[bool] = mapped_column(default=False)
    # Timer alerts already acted on ("respond:warning", "resolve:2:breach", ...).
    alerts_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The next moment the clock changes state; the timer wakes for it.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # Figures kept at closure for statistics (seconds; business time excludes pauses).
    respond_business_s: Mapped[float | None]
    respond_wall_s: Mapped[float | None]
    resolve_business_s: Mapped[float | None]
    resolve_wall_s: Mapped[float | None]
    met_sla: Mapped[bool | None]
    # The same durations as histogram buckets (services/complaints/stats.py), so the
    # statistics count a million complaints instead of sorting them.
    respond_business_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    respond_wall_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    resolve_business_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    resolve_wall_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    # The first purchase after closure (the customer came back), from purchase.recorded.
    returned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_complaints_next_check_at", "next_check_at"),
        Index("ix_complaints_status", "status", "opened_at"),
        Index("ix_complaints_closed_at", "closed_at"),
    )


class ComplaintFigures(Base):
    """What the statistics count of one complaint, in a narrow row (one code for what it
    is counted by, duration buckets): a scan of a million of these costs a fraction of one
    of the complaints themselves. Kept in step by `repository.sync_figures` at every flush."""

    __tablename__ = "complaint_figures"

    complaint_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Status, severity, SLA met, reopened and came back as one code (repository.tally_of).
    tally: Mapped[int] = mapped_column(SmallInteger)
    severity: Mapped[str] = mapped_column(String(10))
    category: Mapped[str | None] = mapped_column(String(100))
    tier: Mapped[str | None] = mapped_column(String(40))
    owner: Mapped[str] = mapped_column(String(100))
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)
    respond_business_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    respond_wall_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    resolve_business_bucket: Mapped[int | None] = mapped_column(SmallInteger)
    resolve_wall_bucket: Mapped[int | None] = mapped_column(SmallInteger)


class ComplaintEntry(Base):
    """One line of a complaint's history: a transition, hand-over, assignment, SLA alert
    or escalation, with who did it and when."""

    __tablename__ = "complaint_entries"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    complaint_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str | None] = mapped_column(String(30))
    note: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Escalation(Base):
    """A complaint reached an escalation level; the key makes it happen once per level,
    whatever the number of replicas or restarts."""

    __tablename__ = "escalations"

    complaint_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    breached: Mapped[str] = mapped_column(String(10))
    assigned_to: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SlaPolicy(Base):
    """A version of the SLA policy (targets, calendar, escalation ladder); the latest
    version applies, to open complaints too."""

    __tablename__ = "sla_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
