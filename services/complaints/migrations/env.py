"""Alembic environment for complaints: the shared runner, on complaints's metadata."""

from services.complaints.models import Base
from shared.db import run_migrations_online

run_migrations_online(Base.metadata)
