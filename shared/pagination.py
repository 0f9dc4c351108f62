"""Cursor pagination: `?cursor=&limit=` in, `{"items": [...], "next_cursor": ...}` out.

The cursor is an opaque token holding the sort key of the last item returned, so pages
stay stable while rows are added (keyset pagination, no OFFSET).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.errors import InvalidInput

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, max 500).")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` from the previous page.")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Out = TypeVar("Out", bound=BaseModel)


def page_of(
    rows: Sequence[Any], limit: int, convert: Callable[[Any], Out], key: Callable[[Any], Any]
) -> Page[Out]:
    """A page from `limit + 1` rows: the extra row only says that there is more; the
    cursor is the sort key of the last row shown."""
    items = [convert(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(*key(rows[limit - 1])) if more else None)


def encode_cursor(*key: Any) -> str:
    raw = json.dumps([str(part) for part in key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The sort key inside a cursor; a 422 for anything we did not issue."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "The cursor is not one this service issued.",
            errors=[{"field": "cursor", "message": "malformed cursor", "type": "cursor"}],
        ) from exc
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(p, str) for p in key):
        raise InvalidInput(
            "The cursor is not one this service issued.",
            errors=[{"field": "cursor", "message": "malformed cursor", "type": "cursor"}],
        )
    return key


def decode_time_key(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    """The (time, id) sort key inside a cursor made by `encode_cursor(time, id)`."""
    if cursor is None:
        return None
    when, ident = decode_cursor(cursor, 2)
    try:
        return dt.datetime.fromisoformat(when), uuid.UUID(ident)
    except ValueError as exc:
        raise InvalidInput("The cursor is not one this service issued.") from exc
