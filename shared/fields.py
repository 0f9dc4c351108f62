"""Field types for API schemas that several services share."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

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


def _plausible_past(value: dt.datetime) -> dt.datetime:
    if value > dt.datetime.now(dt.UTC) + FUTURE_TOLERANCE:
        raise ValueError("lies in the future")
    if value < EARLIEST_PLAUSIBLE:
        raise ValueError("is before 1900")
    return value.astimezone(dt.UTC)


PastTimestamp = Annotated[AwareDatetime, AfterValidator(_plausible_past)]
