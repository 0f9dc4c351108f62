"""The outreach service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.outreach.api import router
from services.outreach.consumers import HANDLERS
from services.outreach.settings import OutreachSettings
from shared.app import ServiceDefinition, create_service_app

DEFINITION = ServiceDefinition(
    name="outreach",
    title="Outreach service",
    description="Service plans per tier, birthdays, holidays, repurchase reminders, "
    "revisits and club events, delivered through channel adapters.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
)


def create_app(settings: OutreachSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or OutreachSettings())
