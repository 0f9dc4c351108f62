"""The tiering service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.tiering.api import router
from services.tiering.consumers import HANDLERS
from services.tiering.service import tiering_service
from services.tiering.settings import TieringSettings
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app


async def seed_default_policy(runtime: ServiceRuntime) -> None:
    """A new install ranks customers with the default policy, with no configuration."""
    async with runtime.sessions() as session, session.begin():
        await tiering_service.ensure_default_policy(session)


DEFINITION = ServiceDefinition(
    name="tiering",
    title="Tiering service",
    description="Ranks customers (Pareto, share bands, value matrix, rules, RFM, "
    "relationship thermometer, churn risk) under versioned policies.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_startup=seed_default_policy,
)


def create_app(settings: TieringSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or TieringSettings())
