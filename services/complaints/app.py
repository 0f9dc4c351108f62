"""The complaints service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.complaints.api import router
from services.complaints.consumers import HANDLERS
from services.complaints.settings import ComplaintsSettings
from shared.app import ServiceDefinition, create_service_app

DEFINITION = ServiceDefinition(
    name="complaints",
    title="Complaints service",
    description="Complaints: judge, decide, communicate, follow up, confirm; "
    "first-contact ownership, SLA timers and escalation.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
)


def create_app(settings: ComplaintsSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or ComplaintsSettings())
