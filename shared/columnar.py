"""Query results as numpy columns, for set-based work over millions of rows.

On PostgreSQL the rows come as one binary COPY whose rows all have the same width (every
column is fixed-size and never NULL), so numpy reads the whole stream in one call; on
SQLite they are fetched as usual. Either way the caller gets one array per column.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Boolean, Double, Integer, Select, Uuid, cast, func, select
from sqlalchemy import literal as sql_literal
from sqlalchemy.ext.asyncio import AsyncSession
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
    compiled = outer.compile(dialect=connection.dialect)
    arguments = [compiled.params[name] for name in (compiled.positiontup or [])]
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
