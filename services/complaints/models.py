"""Complaints tables (so far only the shared outbox, inbox and idempotency tables)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import new_metadata
from shared.outbox import include_shared_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


include_shared_tables(Base.metadata)
