"""Alembic environment for profile: the shared runner, on profile's metadata."""

from services.profile.models import Base
from shared.db import run_migrations_online

run_migrations_online(Base.metadata)
