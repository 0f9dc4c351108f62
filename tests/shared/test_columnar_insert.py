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
    sa.Column("tag", sa.String(20)),
    sa.Column("unset", sa.Integer),
    sa.Column("meta", sa.JSON),
)


@pytest.mark.parametrize("layout", ["grid", "scattered"])
async def test_columns_are_stored_as_given_with_nulls(
    new_database: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    monkeypatch.setattr(columnar, "ROWS_PER_COPY_CHUNK", 3)  # several chunks in one stream
    if layout == "scattered":  # what a chunk whose grid would be too large takes
        monkeypatch.setattr(columnar, "_copy_rows", columnar._copy_rows_scattered)
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
        # One value for every row, of each kind: encoded once and repeated.
        "tag": "same",
        "unset": None,
        "meta": {"policy": [1, 2]},
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
    assert [(row.tag, row.unset, row.meta) for row in rows] == [
        ("same", None, {"policy": [1, 2]})
    ] * 7


@pytest.mark.parametrize("bad_row", [0, 4, 6])
async def test_a_value_that_cannot_be_written_fails_the_insert_and_writes_nothing(
    new_database: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, bad_row: int
) -> None:
    """Whichever chunk holds it (the next chunk is built while one is sent)."""
    monkeypatch.setattr(columnar, "ROWS_PER_COPY_CHUNK", 3)
    url = await new_database("tiering")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    refs: list[object] = [uuid.uuid4() for _ in range(7)]
    refs[bad_row] = 7  # not a UUID
    # (SQLAlchemy wraps the error on SQLite, where the rows go through its bind.)
    with pytest.raises((AttributeError, sa.exc.StatementError), match="no attribute"):
        async with session_factory(engine)() as session, session.begin():
            await insert_columns(
                session, sample, {"id": np.arange(1, 8), "ref": np.array(refs, dtype=object)}, 7
            )
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(sample))).scalar() == 0
    await engine.dispose()


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


def test_the_grid_and_the_scattered_layout_write_the_same_rows() -> None:
    """Random chunks: fixed widths, NULLs, all NULL, variable lengths (empty included)."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        count = int(rng.integers(1, 40))
        fields = []
        for _ in range(int(rng.integers(1, 7))):
            kind = int(rng.integers(0, 4))
            if kind == 0:
                lengths = np.full(count, int(rng.choice([1, 2, 4, 8, 16])), dtype=np.int32)
            elif kind == 1:
                width = int(rng.choice([1, 4, 8]))
                lengths = np.where(rng.random(count) < 0.3, -1, width).astype(np.int32)
            elif kind == 2:
                lengths = np.full(count, -1, dtype=np.int32)
            else:
                sizes = rng.integers(0, 12, count)
                lengths = np.where(rng.random(count) < 0.2, -1, sizes).astype(np.int32)
            data = rng.integers(0, 256, int(np.maximum(lengths, 0).sum())).astype(np.uint8)
            fields.append((lengths, data))
        assert columnar._copy_rows(fields, count) == columnar._copy_rows_scattered(fields, count)


def test_a_chunk_with_one_long_value_is_not_padded_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    scattered: list[int] = []
    original = columnar._copy_rows_scattered

    def spy(fields: list[tuple[np.ndarray, np.ndarray]], count: int) -> bytes:
        scattered.append(count)
        return original(fields, count)

    monkeypatch.setattr(columnar, "_copy_rows_scattered", spy)
    monkeypatch.setattr(columnar, "PADDED_CHUNK_BYTES", 1024)
    lengths = np.array([1] * 999 + [100_000], dtype=np.int32)
    data = np.zeros(int(lengths.sum()), dtype=np.uint8)
    columnar._copy_rows([(lengths, data)], 1000)
    assert scattered == [1000]
    scattered.clear()
    columnar._copy_rows([(np.ones(1000, dtype=np.int32), np.zeros(1000, dtype=np.uint8))], 1000)
    assert scattered == []


async def test_a_read_of_the_same_shape_takes_its_own_values(new_database: DatabaseFactory) -> None:
    """`fetch_columns` compiles a statement once per shape: a second read of that shape
    with other values (a literal, an array of keys, a coalesce default) reads with those,
    not the first read's."""
    url = await new_database("tiering")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            sample.insert(),
            [{"id": n, "count": n * 10 if n % 2 else None} for n in range(1, 7)],
        )
    dialect = engine.dialect

    def shape(ids: list[int], floor: int, missing: int) -> sa.Select[tuple[int, int]]:
        return select_count(ids, floor, missing, dialect)

    found = []
    try:
        async with session_factory(engine)() as session:
            for ids, floor, missing in (([1, 2, 3], 0, -1), ([3, 4, 5, 6], 35, -7)):
                found.append(
                    await columnar.fetch_columns(
                        session,
                        shape(ids, floor, missing),
                        [columnar.Col("id", "int4"), columnar.Col("count", "int8", missing)],
                    )
                )
    finally:
        await engine.dispose()
    assert [column.tolist() for column in found[0].values()] == [[1, 2, 3], [10, -1, 30]]
    assert [column.tolist() for column in found[1].values()] == [[4, 5, 6], [-7, 50, -7]]


def select_count(
    ids: list[int], floor: int, missing: int, dialect: sa.Dialect
) -> sa.Select[tuple[int, int]]:
    from shared.db import column_in

    return (
        sa.select(sample.c.id, sample.c.count)
        .where(column_in(sample.c.id, ids, dialect))
        .where(sa.or_(sample.c.count.is_(None), sample.c.count > sa.literal(floor)))
        .order_by(sample.c.id)
    )
