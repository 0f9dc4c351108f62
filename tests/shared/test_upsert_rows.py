"""`upsert_rows`: new rows inserted, existing ones changed by the given expressions, with
the columns' own types (exact decimals, UTC moments, NULLs) on both databases (arrays
unnested by the server on PostgreSQL, executemany on SQLite); `expire_held` then makes
the session read again exactly the written rows it holds."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from shared.db import (
    ScaledDecimal,
    UTCDateTime,
    create_engine,
    expire_held,
    session_factory,
    upsert_rows,
)
from tests.conftest import DatabaseFactory

metadata = sa.MetaData()
totals = sa.Table(
    "upsert_sample",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("amount", ScaledDecimal(2), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("label", sa.String(20)),
    sa.Column("last_at", UTCDateTime),
)


class _Base(DeclarativeBase):
    pass


class Total(_Base):
    __table__ = totals


def row(key: uuid.UUID, day: int, amount: str, count: int, label: Any, at: Any) -> dict[str, Any]:
    return {
        "id": key,
        "day": day,
        "amount": Decimal(amount),
        "count": count,
        "label": label,
        "last_at": at,
    }


def added(new: Any) -> dict[str, Any]:
    old = totals.c
    return {
        "amount": old.amount + new.amount,
        "count": old.count + new.count,
        "label": sa.func.coalesce(new.label, old.label),
        "last_at": new.last_at,
    }


async def sample_engine(new_database: DatabaseFactory) -> AsyncEngine:
    """An engine on a new database holding the sample table."""
    engine = create_engine(await new_database("tiering"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


async def test_new_rows_are_inserted_and_existing_ones_changed(
    new_database: DatabaseFactory,
) -> None:
    engine = await sample_engine(new_database)
    sessions = session_factory(engine)
    first, second = uuid.uuid4(), uuid.uuid4()
    east = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2026, 12, 4, 8, 0, 0, 123456, tzinfo=east)
    rows = [
        {
            "id": first,
            "day": 1,
            "amount": Decimal("10.05"),
            "count": 1,
            "label": "a",
            "last_at": at,
        },
        {
            "id": first,
            "day": 2,
            "amount": Decimal("-3.10"),
            "count": 2,
            "label": None,
            "last_at": None,
        },
    ]
    async with sessions() as session, session.begin():
        await upsert_rows(session, totals, rows, ["id", "day"], added)
        await upsert_rows(session, totals, [], ["id", "day"], added)  # nothing to do
    again = [
        {
            "id": first,
            "day": 1,
            "amount": Decimal("0.95"),
            "count": 4,
            "label": None,
            "last_at": at,
        },
        {"id": second, "day": 1, "amount": Decimal("7"), "count": 1, "label": "b", "last_at": None},
    ]
    async with sessions() as session, session.begin():
        await upsert_rows(session, totals, again, ["id", "day"], added)
    async with sessions() as session:
        found = {(row.id, row.day): row for row in (await session.execute(sa.select(totals))).all()}
    await engine.dispose()
    assert set(found) == {(first, 1), (first, 2), (second, 1)}
    kept = found[(first, 1)]
    assert (kept.amount, kept.count, kept.label) == (Decimal("11.00"), 5, "a")
    assert kept.last_at == at and kept.last_at.tzinfo == dt.UTC
    refund = found[(first, 2)]
    assert (refund.amount, refund.count, refund.label, refund.last_at) == (
        Decimal("-3.10"),
        2,
        None,
        None,
    )
    assert found[(second, 1)].amount == Decimal("7.00")


async def test_expire_held_reads_again_only_the_written_rows_the_session_holds(
    new_database: DatabaseFactory,
) -> None:
    engine = await sample_engine(new_database)
    sessions = session_factory(engine)
    first, second = uuid.uuid4(), uuid.uuid4()
    try:
        async with sessions() as session, session.begin():
            await upsert_rows(
                session,
                totals,
                [row(first, 1, "1", 1, "a", None), row(second, 1, "2", 1, "b", None)],
                ["id", "day"],
                added,
            )
        async with sessions() as session, session.begin():
            held = list((await session.scalars(sa.select(Total).order_by(Total.amount))).all())
            again = [row(first, 1, "5", 1, None, None), row(second, 1, "5", 1, None, None)]
            await upsert_rows(session, totals, again, ["id", "day"], added)
            expire_held(session, Total, [(first, 1), (uuid.uuid4(), 1)])  # one not held
            assert "amount" not in held[0].__dict__  # expired: read again on next use
            assert held[1].__dict__["amount"] == Decimal("2.00")  # not named: kept as it was
            await session.refresh(held[0])
            assert held[0].amount == Decimal("6.00")
    finally:
        await engine.dispose()
