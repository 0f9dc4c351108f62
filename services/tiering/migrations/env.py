"""Alembic environment for tiering: the shared runner, on tiering's metadata."""

from services.tiering.models import Base
from shared.db import run_migrations_online

run_migrations_online(Base.metadata)
