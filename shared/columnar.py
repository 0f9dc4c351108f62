"""Query results as numpy columns, and numpy columns as new rows, for set-based work
over millions of rows.

On PostgreSQL the rows come as one binary COPY whose rows all have the same width (every
column is fixed-size and never NULL), so numpy reads the whole stream in one call; on
SQLite they are fetched as usual. Either way the caller gets one array per column.
Writing goes the other way: `insert_columns` builds a binary COPY stream from arrays.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Float,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    TypeDecorator,
    Uuid,
    bindparam,
    cast,
    func,
    select,
    text,
    update,
)
from sqlalchemy import literal as sql_literal
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import literal_column

Kind = Literal["int4", "int8", "float8", "bool", "uuid"]

# kind -> (big-endian wire type in a binary COPY, native dtype, SQL type)
_KINDS: dict[str, tuple[str, str, Any]] = {
    "int4": (">i4", "i4", Integer()),
    "int8": (">i8", "i8", BigInteger()),
    "float8": (">f8", "f8", Double()),
    "bool": ("?", "?", Boolean()),
    "uuid": ("V16", "V16", Uuid()),
}
_COPY_HEADER = 19  # signature (11), flags (4), header extension length (4)
_COPY_TRAILER = 2  # field count -1


@dataclass(frozen=True)
class Col:
    """A column to read: its label in the statement, its kind, and what stands for NULL
    (floats default to NaN). Without `null` the column must never be NULL (a NOT NULL
    column: nothing is wrapped around it, and a NULL that arrives is an error)."""

    name: str
    kind: Kind
    null: int | bool | None = None


Columns = dict[str, NDArray[Any]]
Flags = NDArray[np.bool_]


async def fetch_columns(
    session: AsyncSession, statement: Select[Any], cols: Sequence[Col]
) -> Columns:
    """Run `statement` (whose selected columns carry the names in `cols`) and return one
    array per column."""
    inner = statement.subquery()
    postgres = session.get_bind().dialect.name == "postgresql"
    selected = []
    for col in cols:
        sql_type = _KINDS[col.kind][2]
        value: Any = inner.c[col.name]
        if col.kind == "float8":
            if postgres:
                value = func.coalesce(value, literal_column("'NaN'::float8"))
        elif col.null is not None:
            value = func.coalesce(value, sql_literal(col.null))
        selected.append(cast(value, sql_type).label(col.name))
    outer: Select[Any] = select(*selected).select_from(inner)
    if postgres:
        return await _copy_columns(session, outer, cols)
    rows = (await session.execute(outer)).all()
    found: Columns = {}
    for index, col in enumerate(cols):
        values = [row[index] for row in rows]
        if col.kind == "uuid":
            found[col.name] = np.frombuffer(
                b"".join(value.bytes for value in values), dtype="V16"
            ).copy()
        else:
            found[col.name] = np.array(values, dtype=_KINDS[col.kind][1])
    return found


async def _copy_columns(session: AsyncSession, outer: Select[Any], cols: Sequence[Col]) -> Columns:
    connection = await session.connection()
    compiled, params = _compiled(outer, connection.dialect)
    arguments = [params[name] for name in (compiled.positiontup or [])]
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    fields: list[tuple[str, str]] = [("_count", ">i2")]
    widths: dict[str, int] = {}
    for col in cols:
        wire = _KINDS[col.kind][0]
        fields += [(f"_{col.name}_width", ">i4"), (col.name, wire)]
        widths[col.name] = np.dtype(wire).itemsize
    reader = _RowReader(np.dtype(fields), cols, widths)
    await driver.copy_from_query(str(compiled), *arguments, output=reader.take, format="binary")
    return reader.finish()


_COMPILED: dict[Any, SQLCompiler] = {}  # by statement shape (SQLAlchemy's cache key)
_COMPILED_LIMIT = 500


def _compiled(statement: Select[Any], dialect: Dialect) -> tuple[SQLCompiler, Mapping[str, Any]]:
    """The statement's SQL, compiled once per shape, and this statement's parameters: a
    consumer's per-batch reads are the same few shapes with new values, and compiling
    them again cost more than reading their rows."""
    key = statement._generate_cache_key()
    if key is None:  # a construct that cannot be cached
        fresh = statement.compile(dialect=dialect)
        assert isinstance(fresh, SQLCompiler)
        return fresh, fresh.construct_params()
    cache_key = (dialect.name, key.key)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.clear()
        made = statement.compile(dialect=dialect, cache_key=key)
        assert isinstance(made, SQLCompiler)
        compiled = _COMPILED[cache_key] = made
    return compiled, compiled.construct_params(extracted_parameters=key.bindparams)


class _RowReader:
    """Parses a binary COPY stream of fixed-width rows as it arrives, a few megabytes at a
    time: the columns are converted while the database is still sending, and the stream
    is never held whole (joining a 400 MB stream cost more than parsing it)."""

    PARSE_EVERY = 4 << 20

    def __init__(self, row_type: np.dtype[Any], cols: Sequence[Col], widths: dict[str, int]):
        self.row_type = row_type
        self.cols = cols
        self.widths = widths
        self.pending = bytearray()
        self.header_read = False
        self.parts: dict[str, list[NDArray[Any]]] = {col.name: [] for col in cols}

    async def take(self, chunk: bytes) -> None:
        self.pending += chunk
        if len(self.pending) >= self.PARSE_EVERY:
            self._parse()

    def _parse(self) -> None:
        start = 0
        if not self.header_read:
            if len(self.pending) < _COPY_HEADER:
                return
            start, self.header_read = _COPY_HEADER, True
        count = (len(self.pending) - start) // self.row_type.itemsize
        rows = np.frombuffer(self.pending, dtype=self.row_type, offset=start, count=count)
        for col in self.cols:
            if rows.size and np.any(rows[f"_{col.name}_width"] != self.widths[col.name]):
                raise RuntimeError(f"column {col.name} has NULLs or the wrong width")
            self.parts[col.name].append(rows[col.name].astype(_KINDS[col.kind][1]))
        del rows  # the view must go before the buffer shrinks
        del self.pending[: start + count * self.row_type.itemsize]

    def finish(self) -> Columns:
        self._parse()
        if not self.header_read or len(self.pending) != _COPY_TRAILER:
            raise RuntimeError("COPY rows are not all the same width (a NULL or a variable type?)")
        return {
            col.name: np.concatenate(self.parts[col.name])
            if self.parts[col.name]
            else np.empty(0, dtype=_KINDS[col.kind][1])
            for col in self.cols
        }


def as_uuid(value: Any) -> uuid.UUID:
    """One element of a uuid column as a `uuid.UUID`."""
    return uuid.UUID(bytes=value.tobytes())


def group_sum(groups: NDArray[Any], values: NDArray[Any], size: int) -> NDArray[np.int64]:
    """Exact per-group sums of integers (`groups` are positions 0..size-1)."""
    if values.size and float(np.abs(values).sum(dtype=np.float64)) < 2.0**53:
        # bincount adds in float64, which is exact for integers while every sum stays
        # below 2**53; it is many times faster than np.add.at.
        return np.rint(np.bincount(groups, weights=values, minlength=size)).astype(np.int64)
    sums = np.zeros(size, dtype=np.int64)
    np.add.at(sums, groups, values.astype(np.int64))
    return sums


# ------------------------------------------------------------------ writing

_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, extension length
ROWS_PER_COPY_CHUNK = 50_000  # the stream is built this many rows at a time


async def insert_columns(
    session: AsyncSession, table: Any, columns: Mapping[str, Any], count: int
) -> None:
    """Insert `count` rows given as numpy arrays, one per column, in the session's
    transaction: one binary COPY built by numpy on PostgreSQL (no Python object per row),
    executemany elsewhere.

    A column is an array of `count` values or one value for every row. NULL is a masked
    element (`numpy.ma`) or, in float columns, NaN. Text columns take arrays of bytes
    ("S"), str or Python objects; JSON columns take Python values (None is NULL); UUID
    columns take 16-byte values ("V16") or `uuid.UUID`s; timestamp columns one
    aware `datetime` for all rows or an object array of them.
    """
    if count == 0:
        return
    connection = await session.connection()
    ordered = [column for column in table.columns if column.key in columns]
    for column in ordered:
        _sql_type(column)  # refuses what the binary COPY could not write, on every backend
    if connection.dialect.name != "postgresql":
        await session.execute(table.insert(), column_rows(table, columns, count))
        return
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_to_table(
        table.name,
        source=_copy_stream(ordered, columns, count),
        columns=[column.name for column in ordered],
        format="binary",
    )


async def update_columns(
    session: AsyncSession, table: Any, key: str, columns: Mapping[str, Any], count: int
) -> None:
    """UPDATE `count` rows of `table`, found by their `key` column, to values given as
    numpy columns (as `insert_columns` takes them), in the session's transaction: on
    PostgreSQL the new values are COPied into a temporary table and applied by one
    UPDATE ... FROM; elsewhere executemany."""
    if count == 0:
        return
    names = [name for name in columns if name != key]
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        lists = {name: _as_list(table.c[name], columns[name], count) for name in columns}
        await session.execute(
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({name: bindparam(f"b_{name}") for name in names}),
            [
                {f"b_{name}": value for name, value in zip(lists, row, strict=True)}
                for row in zip(*lists.values(), strict=True)
            ],
            execution_options={"synchronize_session": False},
        )
        return
    staging = Table(
        f"staging_{uuid.uuid4().hex[:12]}",
        MetaData(),
        *[Column(name, table.c[name].type) for name in [key, *names]],
        prefixes=["TEMPORARY"],
    )
    await connection.run_sync(lambda sync: staging.create(sync))
    try:
        await insert_columns(session, staging, columns, count)
        # Without statistics the planner guesses the staging size and may merge-join over
        # the whole table; ANALYZE lets it look each row up by key (half the time).
        await session.execute(text(f"ANALYZE {staging.name}"))
        await session.execute(
            update(table)
            .where(table.c[key] == staging.c[key])
            .values({name: staging.c[name] for name in names}),
            execution_options={"synchronize_session": False},
        )
    finally:
        await connection.run_sync(lambda sync: staging.drop(sync))


async def _copy_stream(
    ordered: Sequence[Any], columns: Mapping[str, Any], count: int
) -> AsyncIterator[bytes]:
    yield _COPY_SIGNATURE

    # Each chunk is built in a worker thread (tens of milliseconds of numpy, which on the
    # event loop would stall every request while a million rows are written), the next
    # one while the driver waits for the server to take this one: asyncpg asks for a
    # chunk only once the last has drained.
    def build(start: int) -> asyncio.Future[bytes]:
        stop = min(start + ROWS_PER_COPY_CHUNK, count)
        return asyncio.ensure_future(asyncio.to_thread(_copy_chunk, ordered, columns, start, stop))

    starts = iter(range(0, count, ROWS_PER_COPY_CHUNK))
    building: asyncio.Future[bytes] | None = build(next(starts))
    try:
        while building is not None:
            chunk = await building
            following = next(starts, None)
            building = None if following is None else build(following)
            yield chunk
    finally:
        if building is not None:  # the COPY failed: let the chunk in the making finish
            await asyncio.wait([building])
    yield b"\xff\xff"


def _copy_chunk(ordered: Sequence[Any], columns: Mapping[str, Any], start: int, stop: int) -> bytes:
    fields = [
        _wire_field(column, _rows(columns[column.key], start, stop), stop - start)
        for column in ordered
    ]
    return _copy_rows(fields, stop - start)


def _rows(values: Any, start: int, stop: int) -> Any:
    return values[start:stop] if isinstance(values, np.ndarray) else values


def _sql_type(column: Any) -> Any:
    """The column's type as the database stores it. Decorated types are refused (their
    values would be written unconverted) except timestamps, which are written in UTC."""
    sql_type = column.type
    if isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
        if not isinstance(sql_type, DateTime):
            raise TypeError(f"{column.key}: no column writer for {column.type!r}")
    return sql_type


def _nulls(values: NDArray[Any]) -> tuple[NDArray[Any], Flags]:
    """The values with NULLs filled in, and where the NULLs are."""
    if np.ma.isMaskedArray(values):
        mask = np.ma.getmaskarray(values)
        values = np.ma.getdata(values)
    else:
        mask = np.zeros(len(values), dtype=np.bool_)
    if values.dtype.kind == "f":
        mask = mask | np.isnan(values)
    return values, mask


def _wire_field(column: Any, values: Any, count: int) -> tuple[NDArray[np.int32], NDArray[Any]]:
    """One column of a chunk as (byte length per row, -1 for NULL; the non-NULL values'
    bytes, concatenated in row order)."""
    sql_type = _sql_type(column)
    if isinstance(sql_type, DateTime):
        values = _timestamps(column, values, count)
    elif not isinstance(values, np.ndarray):
        # One value for every row (a policy id, a NULL): encoded once and repeated.
        lengths, data = _wire_field(column, np.array([values], dtype=object), 1)
        return np.repeat(lengths, count), np.tile(data, count)
    if isinstance(sql_type, Uuid) and values.dtype.kind == "O":
        values = np.ma.masked_array(
            np.frombuffer(
                b"".join(bytes(16) if value is None else value.bytes for value in values),
                dtype="V16",
            ),
            mask=[value is None for value in values],
        )
    if isinstance(sql_type, JSON | String):
        return _variable_field(sql_type, values)
    wire = _wire_type(sql_type)
    if values.dtype.kind == "O":  # Python numbers, None for NULL
        items = values.tolist()
        values = np.ma.masked_array(
            np.array([0 if item is None else item for item in items], dtype=wire),
            mask=[item is None for item in items],
        )
    values, mask = _nulls(values)
    width = np.dtype(wire).itemsize
    data = np.ascontiguousarray(values[~mask].astype(wire)).view(np.uint8)
    return np.where(mask, -1, width).astype(np.int32), data


def _timestamps(column: Any, values: Any, count: int) -> NDArray[Any]:
    """Microseconds since PostgreSQL's epoch, from one aware datetime for every row or an
    object array of aware datetimes (None for NULL)."""
    step = dt.timedelta(microseconds=1)
    if isinstance(values, dt.datetime):
        return np.full(count, (values - _PG_EPOCH) // step, dtype=np.int64)
    if not isinstance(values, np.ndarray) or values.dtype.kind != "O":
        raise TypeError(f"{column.key}: a datetime, or an object array of datetimes")
    items = values.tolist()
    return np.ma.masked_array(
        np.array([0 if item is None else (item - _PG_EPOCH) // step for item in items]),
        mask=[item is None for item in items],
    )


def _wire_type(sql_type: Any) -> str:
    if isinstance(sql_type, Uuid):
        return "V16"
    if isinstance(sql_type, Boolean):
        return "?"
    if isinstance(sql_type, Float | Double):
        return ">f8"
    if isinstance(sql_type, SmallInteger):
        return ">i2"
    if isinstance(sql_type, BigInteger | DateTime):
        return ">i8"
    if isinstance(sql_type, Integer):
        return ">i4"
    raise TypeError(f"no binary COPY writer for {sql_type!r}")


def _variable_field(sql_type: Any, values: NDArray[Any]) -> tuple[NDArray[np.int32], NDArray[Any]]:
    """Text or JSON values as UTF-8 bytes (fixed-width "S" arrays without a Python loop)."""
    if values.dtype.kind == "U":
        values = np.ma.masked_array(
            np.char.encode(np.ma.getdata(values), "utf-8"), mask=np.ma.getmaskarray(values)
        )
    if values.dtype.kind == "S":
        values, mask = _nulls(values)
        width = values.dtype.itemsize
        lengths = np.where(mask, -1, np.char.str_len(values)).astype(np.int32)
        grid = values.view(np.uint8).reshape(len(values), width)
        return lengths, grid[np.arange(width) < lengths[:, None]]
    encoded: list[bytes | None] = [
        None
        if value is None
        else orjson.dumps(value)
        if isinstance(sql_type, JSON)
        else str(value).encode()
        for value in values.tolist()
    ]
    lengths = np.array([-1 if item is None else len(item) for item in encoded], dtype=np.int32)
    data = np.frombuffer(b"".join(item for item in encoded if item is not None), dtype=np.uint8)
    return lengths, data


PADDED_CHUNK_BYTES = 64 << 20  # the padded grid of one chunk stays under this


def _copy_rows(fields: Sequence[tuple[NDArray[np.int32], NDArray[Any]]], count: int) -> bytes:
    """Binary COPY rows (field count, then each field's length and bytes) from columns.

    Each row is laid out in a grid wide enough for every field's longest value, with a
    mask of the bytes in use; the grid's used bytes, read in row order, are the rows.
    Whole-column copies, where writing each byte to its own offset scatters: a million
    history rows were a third of a first ranking. A grid that would be too large (one long
    text among short ones) takes the scattering way."""
    sizes = [np.maximum(lengths, 0) for lengths, _ in fields]
    widths = [int(size.max()) if count else 0 for size in sizes]
    row_width = 2 + sum(4 + width for width in widths)
    used = 2 * count + sum(4 * count + int(data.size) for _, data in fields)
    if count * row_width > max(PADDED_CHUNK_BYTES, 2 * used):
        return _copy_rows_scattered(fields, count)
    # One packed record per row: the field count, then per field its length and a slot as
    # wide as its longest value.
    layout: list[tuple[str, str]] = [("count", ">i2")]
    for index, width in enumerate(widths):
        layout.append((f"length{index}", ">i4"))
        if width:
            layout.append((f"value{index}", f"V{width}"))
    rows = np.empty(count, dtype=np.dtype(layout))
    rows["count"] = len(fields)
    grid = rows.view(np.uint8).reshape(count, row_width)
    in_use: NDArray[np.bool_] | None = None
    at = 2
    for index, ((lengths, data), size, width) in enumerate(zip(fields, sizes, widths, strict=True)):
        rows[f"length{index}"] = lengths
        at += 4
        if not width:
            continue
        if data.size == count * width:  # no NULL, one width: a plain copy
            rows[f"value{index}"] = data.view(f"V{width}")
        else:
            filled = np.arange(width) < size[:, None]
            grid[:, at : at + width][filled] = data
            if in_use is None:
                in_use = np.ones((count, row_width), dtype=bool)
            in_use[:, at : at + width] = filled
        at += width
    return grid.tobytes() if in_use is None else grid[in_use].tobytes()


def _copy_rows_scattered(
    fields: Sequence[tuple[NDArray[np.int32], NDArray[Any]]], count: int
) -> bytes:
    """`_copy_rows` writing each field at its own offset in a buffer of the rows' size."""
    sizes = [np.maximum(lengths, 0).astype(np.int64) for lengths, _ in fields]
    row_bytes = 2 + 4 * len(fields) + np.sum(sizes, axis=0)
    position = np.concatenate([[0], np.cumsum(row_bytes)[:-1]])
    buffer = np.empty(int(row_bytes.sum()), dtype=np.uint8)
    _put(buffer, position, np.full(count, len(fields), dtype=">i2"))
    position = position + 2
    for (lengths, data), size in zip(fields, sizes, strict=True):
        _put(buffer, position, lengths.astype(">i4"))
        position = position + 4
        if data.size:
            source_start = np.cumsum(size) - size
            buffer[np.repeat(position - source_start, size) + np.arange(data.size)] = data
        position = position + size
    return buffer.tobytes()


def _put(buffer: NDArray[np.uint8], at: NDArray[np.int64], values: NDArray[Any]) -> None:
    """Write big-endian integers (one per row) at byte positions `at`."""
    width = values.dtype.itemsize
    as_bytes = values.view(np.uint8).reshape(len(values), width)
    for k in range(width):
        buffer[at + k] = as_bytes[:, k]


def column_rows(table: Any, columns: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """Columns as `insert_columns` takes them, as rows: one dict each, with the Python
    values the table's columns bind (UUIDs, str, None for NULL)."""
    lists = {
        column.key: _as_list(column, columns[column.key], count)
        for column in table.columns
        if column.key in columns
    }
    return [dict(zip(lists, row, strict=True)) for row in zip(*lists.values(), strict=True)]


def object_column(values: Sequence[Any]) -> NDArray[Any]:
    """Python values as a one-dimensional object array (lists stay elements, as JSON)."""
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        column[index] = value
    return column


def random_uuid_column(count: int) -> NDArray[Any]:
    """`count` random (version 4) UUIDs as 16-byte values, from one read of the OS's
    random source."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw.view("V16").reshape(count)


def _as_list(column: Any, values: Any, count: int) -> list[Any]:
    """A column as the Python values an executemany binds (for SQLite)."""
    if not isinstance(values, np.ndarray):
        return [values] * count
    values, mask = _nulls(values)
    sql_type = _sql_type(column)
    if values.dtype.kind == "V":
        items: list[Any] = [uuid.UUID(bytes=value.tobytes()) for value in values]
    elif values.dtype.kind == "S":
        items = [value.decode() for value in values.tolist()]
    else:
        items = values.tolist()
    if isinstance(sql_type, Boolean):
        items = [bool(item) for item in items]
    return [None if null else item for item, null in zip(items, mask.tolist(), strict=True)]
