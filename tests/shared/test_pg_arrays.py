"""Rows sent as one parameter per column (`shared.pg_arrays` on PostgreSQL): what is read
back is what was written, for every type the array literals carry (integers, scaled
decimals, UUIDs, timestamps to the microsecond, NULLs) and for the types that keep
asyncpg's own encoding (text with quotes and commas); `column_in` finds exactly the
rows asked for. On SQLite the same calls take the executemany path."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import (
    ScaledDecimal,
    UTCDateTime,
    column_in,
    create_engine,
    insert_new_rows,
    session_factory,
)
from shared.pg_arrays import unnested
from tests.conftest import DatabaseFactory

metadata = sa.MetaData()
sample = sa.Table(
    "array_sample",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("small", sa.Integer),
    sa.Column("big", sa.BigInteger),
    sa.Column("amount", ScaledDecimal(2)),
    sa.Column("other", sa.Uuid),
    sa.Column("at", UTCDateTime),
    sa.Column("label", sa.String(40)),
)
EAST = dt.timezone(dt.timedelta(hours=8))


def random_rows(rng: random.Random, count: int) -> list[dict[str, Any]]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.2 else value

    return [
        {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "small": maybe(rng.randint(-(2**31), 2**31 - 1)),
            "big": maybe(rng.randint(-(2**63), 2**63 - 1)),
            "amount": maybe(Decimal(rng.randint(-(10**12), 10**12)) / 100),
            "other": maybe(uuid.UUID(int=rng.getrandbits(128))),
            # From 1900 to 2200, to the microsecond, in another zone than UTC.
            "at": maybe(
                dt.datetime(1900, 1, 1, tzinfo=EAST)
                + dt.timedelta(microseconds=rng.randrange(300 * 365 * 86400 * 10**6))
            ),
            "label": maybe(rng.choice(["plain", "a,b", 'quote " here', "back\\slash", "{x}"])),
        }
        for _ in range(count)
    ]


async def sample_table(new_database: DatabaseFactory) -> tuple[str, AsyncEngine]:
    """A new database with the sample table, and an engine on it."""
    url = await new_database("tiering")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return url, engine


async def stored(url: str) -> dict[uuid.UUID, dict[str, Any]]:
    engine = create_engine(url)
    async with session_factory(engine)() as session:
        rows = (await session.execute(sa.select(sample))).mappings().all()
    await engine.dispose()
    return {row["id"]: dict(row) for row in rows}


async def test_rows_read_back_as_written(new_database: DatabaseFactory) -> None:
    url, engine = await sample_table(new_database)
    rng = random.Random(3)
    batches = [random_rows(rng, count) for count in (1, 2, 300)]
    # A batch whose columns are all alike but the key (each goes as one value), and one
    # whose nullable columns are all NULL.
    alike = random_rows(rng, 1)[0]
    batches.append([{**alike, "id": uuid.uuid4()} for _ in range(5)])
    batches.append([{**row, **dict.fromkeys(list(row)[1:])} for row in random_rows(rng, 4)])
    async with session_factory(engine)() as session, session.begin():
        for batch in batches:
            made = await insert_new_rows(session, sample, batch, "id")
            assert made == {row["id"] for row in batch}
        # Rows whose key exists are left alone.
        again = [{**batches[0][0], "small": 1}]
        assert await insert_new_rows(session, sample, again, "id") == set()
    await engine.dispose()
    found = await stored(url)
    written = [row for batch in batches for row in batch]
    assert len(found) == len(written)
    for row in written:
        assert found[row["id"]] == row


async def test_column_in_finds_exactly_the_values_asked_for(
    new_database: DatabaseFactory,
) -> None:
    _, engine = await sample_table(new_database)
    rows = random_rows(random.Random(4), 200)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await insert_new_rows(session, sample, rows, "id")
    wanted = rows[::3]
    async with sessions() as session:
        dialect = session.get_bind().dialect

        async def ids_where(column: Any, values: list[Any]) -> set[uuid.UUID]:
            query = sa.select(sample.c.id).where(column_in(column, values, dialect))
            return set((await session.execute(query)).scalars())

        assert await ids_where(sample.c.id, [row["id"] for row in wanted]) == {
            row["id"] for row in wanted
        }
        bigs = [row["big"] for row in wanted if row["big"] is not None]
        assert await ids_where(sample.c.big, bigs) == {
            row["id"] for row in rows if row["big"] in set(bigs)
        }
        moments = [row["at"] for row in wanted if row["at"] is not None]
        assert await ids_where(sample.c.at, moments) == {
            row["id"] for row in rows if row["at"] in set(moments)
        }
        labels = ['quote " here', "a,b"]
        assert await ids_where(sample.c.label, labels) == {
            row["id"] for row in rows if row["label"] in labels
        }
        assert await ids_where(sample.c.small, []) == set()
    await engine.dispose()


def test_a_column_of_alike_values_is_one_parameter() -> None:
    now = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    rows = [
        {"id": uuid.uuid4(), "small": 1, "at": now, "label": "x"},
        {"id": uuid.uuid4(), "small": 2, "at": now, "label": "x"},
    ]
    compiled = unnested(sample, rows, postgresql.asyncpg.dialect()).compile(
        dialect=postgresql.asyncpg.dialect()
    )
    assert set(compiled.params) == {"id_values", "small_values", "at_value", "label_value"}
    assert compiled.params["small_values"] == "{1,2}"


# PostgreSQL only: SQLite keeps whatever it is given in an INTEGER column.
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_fraction_in_an_integer_column_is_refused_not_cut(
    new_database: DatabaseFactory,
) -> None:
    url, engine = await sample_table(new_database)
    rows = [{"id": uuid.uuid4(), "small": value} for value in (1, 2.5)]
    with pytest.raises(sa.exc.DBAPIError):
        async with session_factory(engine)() as session, session.begin():
            await insert_new_rows(session, sample, rows, "id")
    await engine.dispose()
    assert await stored(url) == {}
