"""A running profile service (with its relay) on the shared broker, per test and backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.profile.app import create_app
from services.profile.settings import ProfileSettings
from shared.broker import EmbeddedBroker
from tests.conftest import DatabaseFactory, running, service_settings


@pytest.fixture
async def profile_db(new_database: DatabaseFactory) -> str:
    return await new_database("profile")


@pytest.fixture
async def profile(
    broker: EmbeddedBroker, profile_db: str, topic_prefix: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = service_settings(
        ProfileSettings, database_url=profile_db, bootstrap=broker.bootstrap, prefix=topic_prefix
    )
    async with running(create_app(settings)) as client:
        yield client
