"""The benchmark baseline: a bare FastAPI endpoint inserting one row, same engine settings.

Run by bench/slice.py as `uvicorn bench.baseline_app:create_app --factory` with
BENCH_DATABASE_URL set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Column, MetaData, String, Table, Text, Uuid

from shared.db import create_engine, session_factory

metadata = MetaData()
rows = Table(
    "baseline_rows",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("body", Text, nullable=False),
)


def create_app() -> FastAPI:
    url = os.environ["BENCH_DATABASE_URL"]
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        state["sessions"] = session_factory(engine)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/rows/{customer_id}", status_code=201)
    async def insert_row(customer_id: str, body: dict[str, Any]) -> dict[str, str]:
        row_id = uuid.uuid4()
        async with state["sessions"]() as session, session.begin():
            await session.execute(
                rows.insert().values(id=row_id, customer_id=customer_id, body=str(body))
            )
        return {"id": str(row_id)}

    return app
