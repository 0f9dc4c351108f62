"""Tiering tables."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import ScaledDecimal, UTCDateTime, new_metadata, utcnow
from shared.outbox import include_shared_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)


class CustomerAggregate(Base):
    """Per-customer figures kept up to date from events; what ranking reads."""

    __tablename__ = "customer_aggregates"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    known: Mapped[bool] = mapped_column(default=False)  # customer.created seen
    revenue: Mapped[Decimal] = mapped_column(ScaledDecimal(2), default=Decimal(0))
    quantity: Mapped[Decimal] = mapped_column(ScaledDecimal(3), default=Decimal(0))
    purchase_count: Mapped[int] = mapped_column(default=0)
    first_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    tier: Mapped[str | None]
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
