"""`insert_columns`: rows given as numpy columns arrive exactly as given, NULLs included,
on both databases (a binary COPY built by numpy on PostgreSQL, executemany on SQLite)."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from shared import columnar
from shared.columnar import insert_columns
from shared.db import UTCDateTime, create_engine, session_factory
from tests.conftest import DatabaseFactory

metadata = sa.MetaData()
sample = sa.Table(
    "columnar_sample",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("big", sa.BigInteger),
    sa.Column("small", sa.SmallInteger),
    sa.Column("count", sa.Integer),
    sa.Column("level", sa.Integer),
    sa.Column("ratio", sa.Double),
    sa.Column("flag", sa.Boolean),
    sa.Column("ref", sa.Uuid),
    sa.Column("owner", sa.Uuid),
    sa.Column("label", sa.String(40)),
    sa.Column("note", sa.Text),
    sa.Column("extra", sa.JSON),
    sa.Column("at", UTCDateTime),
    sa.Column("seen", UTCDateTime),
)


async def test_columns_are_stored_as_given_with_nulls(
    new_database: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar, "ROWS_PER_COPY_CHUNK", 3)  # several chunks in one stream
    url = await new_database("tiering")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    refs = [uuid.uuid4() for _ in range(7)]
    owner = uuid.uuid4()
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
    east = dt.timezone(dt.timedelta(hours=8))
    seen = [at + dt.timedelta(days=n) for n in range(6)] + [None]
    seen[2] = dt.datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=east)  # before PG's epoch
    columns = {
        "id": np.arange(1, 8, dtype=np.int64),
        "big": np.ma.masked_array(
            [2**40, -1, 0, 5, 6, 7, 8], mask=[False, False, True, False, False, False, False]
        ),
        "small": np.ma.masked_array([1, 2, 3, 4, 5, -6, 7], mask=[False] * 6 + [True]),
        "count": 42,
        "level": np.array([1, None, 3, 4, 5, 6, 7], dtype=object),
        "ratio": np.array([0.5, np.nan, 1e-9, -2.25, 0.0, 3.0, np.nan]),
        "flag": np.array([True, False, True, True, False, False, True]),
        "ref": np.frombuffer(b"".join(u.bytes for u in refs), dtype="V16"),
        "owner": owner,
        "label": np.array([b"A", b"gold", b"", b"silver", b"C", b"D", b"\xc3\xa9t\xc3\xa9"]),
        "note": np.array(["x", None, "ünïcode", "", "a\tb\nc", None, "z"], dtype=object),
        "extra": np.array([{"a": 1}, None, [1, "2"], {}, None, {"k": "v"}, "s"], dtype=object),
        "at": at,
        "seen": np.array(seen, dtype=object),
    }
    async with session_factory(engine)() as session, session.begin():
        await insert_columns(session, sample, columns, 7)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(sample).order_by(sample.c.id))).all()
    await engine.dispose()
    assert [row.big for row in rows] == [2**40, -1, None, 5, 6, 7, 8]
    assert [row.small for row in rows] == [1, 2, 3, 4, 5, -6, None]
    assert {row.count for row in rows} == {42}
    assert [row.level for row in rows] == [1, None, 3, 4, 5, 6, 7]
    assert [row.ratio for row in rows] == [0.5, None, 1e-9, -2.25, 0.0, 3.0, None]
    assert [row.flag for row in rows] == [True, False, True, True, False, False, True]
    assert [row.ref for row in rows] == refs
    assert {row.owner for row in rows} == {owner}
    assert [row.label for row in rows] == ["A", "gold", "", "silver", "C", "D", "été"]
    assert [row.note for row in rows] == ["x", None, "ünïcode", "", "a\tb\nc", None, "z"]
    assert [row.extra for row in rows] == [{"a": 1}, None, [1, "2"], {}, None, {"k": "v"}, "s"]
    assert {row.at for row in rows} == {at}
    assert [row.seen for row in rows] == seen


async def test_decorated_types_other_than_timestamps_are_refused(
    new_database: DatabaseFactory,
) -> None:
    from shared.db import ScaledDecimal

    money = sa.Table(
        "columnar_money",
        sa.MetaData(),
        sa.Column("amount", ScaledDecimal(2)),
    )
    url = await new_database("tiering")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(money.metadata.create_all)
    with pytest.raises(TypeError, match="amount"):
        async with session_factory(engine)() as session, session.begin():
            await insert_columns(session, money, {"amount": np.array([1, 2])}, 2)
    await engine.dispose()
