"""The tiering service's app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.tiering.api import router
from services.tiering.consumers import HANDLERS
from services.tiering.settings import TieringSettings
from shared.app import ServiceDefinition, create_service_app

DEFINITION = ServiceDefinition(
    name="tiering",
    title="Tiering service",
    description="Ranks customers (Pareto, share bands, value matrix, rules, RFM, "
    "relationship thermometer, churn risk) under versioned policies.",
    routers=[router],
    handlers=HANDLERS,
    migrations_dir=Path(__file__).parent / "migrations",
)


def create_app(settings: TieringSettings | None = None) -> FastAPI:
    return create_service_app(DEFINITION, settings or TieringSettings())
