"""The profile service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.profile.api import router
from services.profile.consumers import BULK_HANDLERS, HANDLERS
from services.profile.settings import ProfileSettings
from shared.app import ServiceDefinition, create_service_app

DEFINITION = ServiceDefinition(
    name="profile",
    title="Profile service",
    description="The customer's DNA: profile, contacts, consent, purchases, payments, "
    "interactions.",
    routers=[router],
    handlers=HANDLERS,
    bulk_handlers=BULK_HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
    upload_paths=("/v1/imports/customers", "/v1/imports/purchases"),
)


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or ProfileSettings())
