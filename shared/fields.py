"""Field types for API schemas that several services share."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)

CENT = Decimal("0.01")
THOUSANDTH = Decimal("0.001")

# Money: a decimal string in the base currency, at most 2 decimal places.
# Kept at two places from the start, so a write answers `"125000.00"` as every read does.
Money = Annotated[
    Decimal,
    Field(max_digits=15, decimal_places=2, allow_inf_nan=False, examples=["1299.50"]),
    AfterValidator(lambda amount: amount.quantize(CENT)),
]
Quantity = Annotated[
    Decimal,
    Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False, examples=["1"]),
    AfterValidator(lambda quantity: quantity.quantize(THOUSANDTH)),
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


# Named in the OpenAPI document as components (`shared.openapi` puts a reference where
# this marker stands): the zone list is long and the base currency is a setting.
COMPONENT = "x-crm-component"
TimeZoneName = Annotated[
    str,
    AfterValidator(_known_zone),
    WithJsonSchema({"type": "string", COMPONENT: "TimeZoneName"}),
]
BaseCurrency = Annotated[
    CurrencyCode, WithJsonSchema({"type": "string", COMPONENT: "BaseCurrency"})
]


def openapi_components(base_currency: str) -> dict[str, dict[str, Any]]:
    return {
        "TimeZoneName": {
            "type": "string",
            "description": "An IANA time zone name.",
            "enum": sorted(_ZONES),
            "examples": ["Asia/Shanghai"],
        },
        "BaseCurrency": {
            "type": "string",
            "description": "The base currency (CRM_BASE_CURRENCY): amounts are in it alone.",
            "enum": [base_currency],
        },
    }


# Clocks drift; anything later than this past "now" is a typo, not a sale.
FUTURE_TOLERANCE = dt.timedelta(hours=24)
EARLIEST_PLAUSIBLE = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


# RFC 3339 date-times only (a bare number would otherwise be read as seconds since 1970).
_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$"


def written_as(pattern: str, made: type, wording: str) -> BeforeValidator:
    """A client's value must be text matching `pattern` (else 422 saying it `wording`);
    a `made` value (exactly that type: from our own code, not a client) passes."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if type(value) is made:
            return value
        if not isinstance(value, str) or not compiled.match(value):
            raise ValueError(wording)
        return value

    return BeforeValidator(check)


Timestamp = Annotated[
    AwareDatetime,
    written_as(
        _RFC3339,
        dt.datetime,
        "must be an RFC 3339 date-time with its offset, e.g. 2026-12-02T08:00:00Z",
    ),
]


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


# A calendar day as ISO 8601 `YYYY-MM-DD` only (a bare number would be read as seconds
# since 1970), and a local time of day as `HH:MM[:SS]` (JSON Schema's `time` format
# demands a UTC offset, which a wall-clock time in a customer's own zone has not).
_ISO_DAY = r"^\d{4}-\d{2}-\d{2}$"
_LOCAL_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$"

Day = Annotated[dt.date, written_as(_ISO_DAY, dt.date, "must be a date written YYYY-MM-DD")]
LocalTime = Annotated[
    dt.time,
    written_as(_LOCAL_TIME_PATTERN, dt.time, "must be a time of day written HH:MM or HH:MM:SS"),
    WithJsonSchema({"type": "string", "pattern": _LOCAL_TIME_PATTERN, "examples": ["08:00"]}),
]


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# Numbers in request bodies: JSON's true and false are not 1 and 0.
JsonInt = Annotated[int, BeforeValidator(_not_a_boolean)]
JsonFloat = Annotated[float, BeforeValidator(_not_a_boolean)]
