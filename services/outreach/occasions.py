"""Dates that come back every year, and moments in a customer's own time zone.

Birthdays and key dates are kept as the Gregorian date they happened on, with the
calendar the person celebrates them in: a lunar birthday falls on the same lunar month
and day each year (converted by `lunardate`, a maintained lunar-calendar package).
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

from lunardate import LunarDate

GREGORIAN = "gregorian"
LUNAR = "lunar"


def anniversary(born: dt.date, year: int, calendar: str = GREGORIAN) -> dt.date:
    """The date in `year` on which a date first seen on `born` comes back.

    29 February falls on 28 February in other years. A lunar date keeps its lunar month
    and day (a leap-month date comes back in the ordinary month of that number; day 30
    of a month that has 29 days that year falls on day 29)."""
    if calendar == LUNAR:
        lunar = LunarDate.from_solar_date(born.year, born.month, born.day)
        try:
            solar: dt.date = LunarDate(year, lunar.month, lunar.day).to_solar_date()
        except ValueError:
            solar = LunarDate(year, lunar.month, 29).to_solar_date()
        return solar
    if born.month == 2 and born.day == 29:
        try:
            return dt.date(year, 2, 29)
        except ValueError:
            return dt.date(year, 2, 28)
    return born.replace(year=year)


# Planning a million customers asks for the same few thousand dates and moments again and
# again: each is worked out once.
@functools.lru_cache(maxsize=1 << 17)
def next_anniversary(born: dt.date, on_or_after: dt.date, calendar: str = GREGORIAN) -> dt.date:
    """The first return of `born` on or after `on_or_after` (a lunar year may start in
    the Gregorian year before or after, so three are tried)."""
    candidates = (
        anniversary(born, year, calendar)
        for year in range(on_or_after.year - 1, on_or_after.year + 2)
        if year > born.year or (year == born.year and calendar == GREGORIAN)
    )
    return min(day for day in candidates if day >= on_or_after)


@functools.lru_cache(maxsize=1 << 16)
def local_moment(day: dt.date, at: dt.time, zone: str) -> dt.datetime:
    """`at` o'clock on `day` in `zone`, in UTC. A wall time that does not exist (the hour
    skipped by a DST change) moves on by the gap, and one that happens twice is the first
    (PEP 495, fold 0)."""
    return dt.datetime.combine(day, at, ZoneInfo(zone)).astimezone(dt.UTC)


def local_today(now: dt.datetime, zone: str) -> dt.date:
    return now.astimezone(ZoneInfo(zone)).date()
