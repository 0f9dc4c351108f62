"""Field types for API schemas that several services share."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

# Money: a decimal string in the base currency, at most 2 decimal places.
Money = Annotated[
    Decimal,
    Field(max_digits=15, decimal_places=2, allow_inf_nan=False, examples=["1299.50"]),
]
Quantity = Annotated[
    Decimal, Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False, examples=["1"])
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortLabel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]

_ZONES = available_timezones()


def _known_zone(value: str) -> str:
    if value not in _ZONES:
        raise ValueError("not an IANA time zone (e.g. Asia/Shanghai)")
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]

# Clocks drift; anything later than this past "now" is a typo, not a sale.
FUTURE_TOLERANCE = dt.timedelta(hours=24)
EARLIEST_PLAUSIBLE = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


# RFC 3339 date-times only (a bare number would otherwise be read as seconds since 1970).
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value  # from our own code, not from a client
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2026-12-02T08:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


def _plausible_past(value: dt.datetime) -> dt.datetime:
    if value > dt.datetime.now(dt.UTC) + FUTURE_TOLERANCE:
        raise ValueError("lies in the future")
    if value < EARLIEST_PLAUSIBLE:
        raise ValueError("is before 1900")
    return value.astimezone(dt.UTC)


PastTimestamp = Annotated[Timestamp, AfterValidator(_plausible_past)]


# Free-form JSON a client may store (a customer's attributes): bounded so it can be
# stored, indexed and read back by any JSON client (I-JSON, RFC 7493: integers within
# +-(2**53 - 1), finite numbers), and so no nesting can exhaust a parser downstream.
FREE_JSON_MAX_DEPTH = 5
FREE_JSON_SAFE_INTEGER = 2**53 - 1


def free_json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` is not acceptable free-form JSON, or None."""
    if depth > FREE_JSON_MAX_DEPTH:
        return f"is nested more than {FREE_JSON_MAX_DEPTH} levels deep"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        if abs(value) > FREE_JSON_SAFE_INTEGER:
            return "holds an integer outside +-(2**53 - 1)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "holds a number that is not finite"
    items = value.values() if isinstance(value, dict) else value
    if isinstance(value, (dict, list)):
        for item in items:
            problem = free_json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return "holds a value that is not JSON"
