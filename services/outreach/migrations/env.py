"""Alembic environment for outreach: the shared runner, on outreach's metadata."""

from services.outreach.models import Base
from shared.db import run_migrations_online

run_migrations_online(Base.metadata)
