"""PostgreSQL: many values as one statement parameter, for set-based writes and lookups.

A batch's rows travel as one array per column, unnested by the server, so the statement
text is the same for any number of rows. asyncpg encodes an array element by element,
at 0.5 µs (integers) to 1.8 µs (timestamps) of Python time each on a 2-core test machine:
a tenth of the tiering consumer's time. Here integers and UUIDs go as the text of an
array literal, built by one join, and timestamps as integer microseconds since the epoch,
turned back into timestamps by the server. A column whose values are all alike goes as
one value. Other types keep asyncpg's array encoding.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    Uuid,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

Kind = Literal["integer", "uuid", "timestamp"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def array_parameter(
    name: str | None, values: Sequence[Any], sql_type: Any, dialect: Dialect
) -> Any:
    """`values` of a column of `sql_type` as one array parameter: an array of the column's
    type, except for timestamps, an array of microseconds since the epoch (`from_micros`)."""
    kind = _kind_of(sql_type)
    if kind is None:
        return bindparam(name, list(values), type_=ARRAY(sql_type))
    stored = _stored(values, sql_type, dialect)
    array_type: Any
    if kind == "uuid":
        text, array_type = _uuid_literal(stored), ARRAY(Uuid())
    elif kind == "timestamp":
        text, array_type = _integer_literal(_micros(stored)), ARRAY(BigInteger())
    else:
        text, array_type = _integer_literal(stored), ARRAY(_impl(sql_type))
    return cast(bindparam(name, text, type_=String()), array_type)


def among(column: Any, values: Sequence[Any], dialect: Dialect) -> Any:
    """`column IN (SELECT unnest(array))`, the values as one array parameter (a semi-join:
    the array is read once, where `= ANY` over a cast literal reads it for every row)."""
    array = array_parameter(None, values, column.type, dialect)
    value = func.unnest(array)
    if _kind_of(column.type) == "timestamp":
        value = from_micros(value)
    return column.in_(select(value))


def unnested(table: Any, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> Any:
    """The rows (mappings with the same keys) as a SELECT over one array per column,
    unnested side by side; a column whose values are all alike is one parameter."""
    return unnested_columns(table, {name: [row[name] for row in rows] for name in rows[0]}, dialect)


def unnested_columns(table: Any, columns: Mapping[str, Sequence[Any]], dialect: Dialect) -> Any:
    """`unnested` for rows given as one sequence of values per column."""
    names = list(columns)
    varying = [name for name in names if not _alike(columns[name])] or names[:1]
    derived = (
        func.unnest(
            *[
                array_parameter(f"{name}_values", columns[name], table.c[name].type, dialect)
                for name in varying
            ]
        )
        .table_valued(*varying)
        .render_derived()
    )
    selected: list[Any] = []
    for name in names:
        sql_type = table.c[name].type
        value: Any
        if name not in varying:
            value = cast(bindparam(f"{name}_value", columns[name][0], type_=sql_type), sql_type)
        elif _kind_of(sql_type) == "timestamp":
            value = from_micros(derived.c[name])
        else:
            value = derived.c[name]
        selected.append(value.label(name))
    return select(*selected)


def from_micros(micros: Any) -> Any:
    """Microseconds since the epoch as a timestamp, exactly (an interval times an integer
    below 2**53 is exact; the years 1970-2255 fit)."""
    return literal_column("TIMESTAMPTZ 'epoch'") + micros * literal_column(
        "INTERVAL '1 microsecond'"
    )


def _alike(values: Sequence[Any]) -> bool:
    first = values[0]
    # The last value first: most columns that vary differ there, and a count of all of
    # them would compare every value.
    return values[-1] == first and values.count(first) == len(values)


def _impl(sql_type: Any) -> Any:
    return sql_type.impl_instance if isinstance(sql_type, TypeDecorator) else sql_type


def _kind_of(sql_type: Any) -> Kind | None:
    impl = _impl(sql_type)
    if isinstance(impl, Integer):
        return "integer"
    if isinstance(impl, Uuid):
        return "uuid"
    if isinstance(impl, DateTime) and impl.timezone:
        return "timestamp"
    return None


def _stored(values: Sequence[Any], sql_type: Any, dialect: Dialect) -> list[Any]:
    """The values as the column stores them (a decorated type's own conversion; for a
    timestamp, microseconds from an aware datetime need no conversion to UTC first, and a
    naive one cannot be subtracted from the epoch)."""
    if isinstance(sql_type, TypeDecorator) and _kind_of(sql_type) != "timestamp":
        process = sql_type.process_bind_param
        return [None if value is None else process(value, dialect) for value in values]
    return list(values)


def _integer_literal(values: list[Any]) -> str:
    # str(), not int(): a fraction then fails in the database instead of being cut off.
    if None in values:
        return "{" + ",".join("NULL" if value is None else str(value) for value in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _uuid_literal(values: list[Any]) -> str:
    if any(value is None for value in values):
        return (
            "{"
            + ",".join("NULL" if value is None else _as_uuid(value).hex for value in values)
            + "}"
        )
    digits = b"".join([_as_uuid(value).bytes for value in values]).hex()
    return "{" + ",".join([digits[at : at + 32] for at in range(0, len(digits), 32)]) + "}"


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _micros(values: list[Any]) -> list[int | None]:
    return [None if value is None else (value - _EPOCH) // _MICROSECOND for value in values]
