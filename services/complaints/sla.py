"""SLA arithmetic: deadlines as a pure function of a complaint's history, the policy and the
business calendar (no stored clock that could go stale).

The respond clock runs from receipt until the complaint is first judged; the resolve
clock runs in cycles, from receipt (or a reopen) until the customer confirms. Both count
business time only (working hours, no public holidays or closed days; China's make-up
working Saturdays count) and stop while the complaint waits on the customer.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import holidays

# Statuses in which the complaint has been answered (the respond clock has stopped).
RESPONDED = frozenset({"judged", "decided", "communicated", "following_up", "confirmed"})
PAUSED = "waiting_on_customer"
# How far ahead a deadline is looked for before the calendar is declared unworkable.
MAX_DAYS_AHEAD = 3 * 366
FOREVER = dt.datetime.max.replace(tzinfo=dt.UTC)

Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday (Monday = 0) in one time zone, minus public holidays of a
    country and the company's closed days, plus make-up and extra working days.

    `hours` empty means the clock runs around the clock (wall time)."""

    zone: str = "UTC"
    hours: tuple[tuple[tuple[dt.time, dt.time], ...], ...] = ()
    country: str | None = None
    subdivision: str | None = None
    closed_days: frozenset[dt.date] = frozenset()
    extra_working_days: frozenset[dt.date] = frozenset()

    @property
    def around_the_clock(self) -> bool:
        return not self.hours

    def _holidays(self) -> holidays.HolidayBase | None:
        if self.country is None:
            return None
        return _country_holidays(self.country, self.subdivision)

    def day_hours(self, day: dt.date) -> tuple[tuple[dt.time, dt.time], ...]:
        """The working hours of one local date (empty on a day off)."""
        if day in self.closed_days:
            return ()
        usual = self.hours[day.weekday()]
        if day in self.extra_working_days:
            return usual or self._makeup_hours()
        public = self._holidays()
        if public is not None:
            if day in public:
                return ()
            if day in public.weekend_workdays:  # a make-up working day (调休)
                return usual or self._makeup_hours()
        return usual

    def _makeup_hours(self) -> tuple[tuple[dt.time, dt.time], ...]:
        """A weekend day worked in exchange keeps the hours of the first working weekday."""
        return next((hours for hours in self.hours if hours), ())

    def working_intervals(self, start: dt.datetime) -> Iterator[Interval]:
        """Working intervals in UTC from `start` on, in order."""
        if self.around_the_clock:
            yield start, FOREVER
            return
        zone = ZoneInfo(self.zone)
        day = start.astimezone(zone).date()
        for _ in range(MAX_DAYS_AHEAD):
            for opens, closes in self.day_hours(day):
                begin = dt.datetime.combine(day, opens, zone).astimezone(dt.UTC)
                end = (
                    dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone)
                    if closes == dt.time(0)
                    else dt.datetime.combine(day, closes, zone)
                ).astimezone(dt.UTC)
                if end > start:
                    yield max(begin, start), end
            day += dt.timedelta(days=1)


@functools.lru_cache(maxsize=64)
def _country_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision)


def _minus(intervals: Iterator[Interval], pauses: Sequence[Interval]) -> Iterator[Interval]:
    """`intervals` with the (sorted, disjoint) `pauses` cut out."""
    for begin, end in intervals:
        cursor = begin
        for pause_start, pause_end in pauses:
            if pause_end <= cursor or pause_start >= end:
                continue
            if pause_start > cursor:
                yield cursor, pause_start
            cursor = max(cursor, pause_end)
            if cursor >= end:
                break
        if cursor < end:
            yield cursor, end


def deadline(
    calendar: BusinessCalendar,
    start: dt.datetime,
    target: dt.timedelta,
    pauses: Sequence[Interval] = (),
) -> dt.datetime:
    """The moment `target` of business time has passed since `start`, not counting pauses."""
    left = target
    for begin, end in _minus(calendar.working_intervals(start), pauses):
        if end - begin >= left:
            return begin + left
        left -= end - begin
    raise ValueError("the business calendar has no working time in the next three years")


def elapsed(
    calendar: BusinessCalendar,
    start: dt.datetime,
    end: dt.datetime,
    pauses: Sequence[Interval] = (),
) -> dt.timedelta:
    """Business time between `start` and `end`, not counting pauses."""
    total = dt.timedelta()
    if end <= start:
        return total
    for begin, stop in _minus(calendar.working_intervals(start), pauses):
        if begin >= end:
            break
        total += min(stop, end) - begin
    return total


@dataclass(frozen=True)
class Targets:
    """How long a complaint may take: to respond (reach judged) and to resolve (confirmed)."""

    respond: dt.timedelta
    resolve: dt.timedelta
    warning_at: float = 0.8  # share of a target after which a warning is due


@dataclass(frozen=True)
class Step:
    """One entry of a complaint's status history."""

    at: dt.datetime
    status: str


@dataclass(frozen=True)
class Cycle:
    """One resolve cycle: from receipt or a reopen to the customer's confirmation."""

    started_at: dt.datetime
    ended_at: dt.datetime | None
    due_at: dt.datetime | None  # None while paused (the deadline moves with the pause)
    warn_at: dt.datetime | None
    breached: bool
    business_time: dt.timedelta
    wall_time: dt.timedelta


@dataclass(frozen=True)
class Clock:
    """Where a complaint stands against its SLA at `now`."""

    respond_due_at: dt.datetime | None
    respond_warn_at: dt.datetime | None
    responded_at: dt.datetime | None
    respond_breached: bool
    respond_business_time: dt.timedelta
    paused: bool
    cycles: list[Cycle] = field(default_factory=list)

    @property
    def current(self) -> Cycle:
        return self.cycles[-1]

    @property
    def breached(self) -> bool:
        """Breached now: not answered in time, or the current cycle is late."""
        return self.respond_breached or self.current.breached

    def upcoming(self, now: dt.datetime) -> list[dt.datetime]:
        """The moments after `now` at which the clock's state changes (timers to set)."""
        moments = [
            moment
            for moment in (
                self.respond_warn_at if self.responded_at is None else None,
                self.respond_due_at if self.responded_at is None else None,
                self.current.warn_at if self.current.ended_at is None else None,
                self.current.due_at if self.current.ended_at is None else None,
            )
            if moment is not None
        ]
        return sorted(moment for moment in moments if moment >= now)


def pauses_of(steps: Sequence[Step], now: dt.datetime) -> list[Interval]:
    """The intervals spent waiting on the customer (the last one may still be open)."""
    found: list[Interval] = []
    since: dt.datetime | None = None
    for step in steps:
        if step.status == PAUSED and since is None:
            since = step.at
        elif step.status != PAUSED and since is not None:
            found.append((since, step.at))
            since = None
    if since is not None:
        found.append((since, max(now, since)))
    return found


def clock(
    steps: Sequence[Step], targets: Targets, calendar: BusinessCalendar, now: dt.datetime
) -> Clock:
    """The SLA clock of a complaint whose status history is `steps` (the first is receipt)."""
    received = steps[0].at
    paused = steps[-1].status == PAUSED
    pauses = pauses_of(steps, now)
    # While paused the deadline is not known yet: it moves on with every paused minute.
    closed_pauses = pauses[:-1] if paused else pauses

    responded_at = next((step.at for step in steps if step.status in RESPONDED), None)
    respond_due = deadline(calendar, received, targets.respond, closed_pauses)
    respond_warn = deadline(calendar, received, targets.respond * targets.warning_at, pauses)
    respond_open = responded_at is None and paused
    cycles: list[Cycle] = []
    for started_at, ended_at in _cycle_bounds(steps):
        due = deadline(calendar, started_at, targets.resolve, closed_pauses)
        open_and_paused = ended_at is None and paused
        until = ended_at or now
        cycles.append(
            Cycle(
                started_at=started_at,
                ended_at=ended_at,
                due_at=None if open_and_paused else due,
                warn_at=None
                if open_and_paused
                else deadline(calendar, started_at, targets.resolve * targets.warning_at, pauses),
                breached=not open_and_paused and _late(ended_at, now, due),
                business_time=elapsed(calendar, started_at, until, pauses),
                wall_time=until - started_at,
            )
        )
    return Clock(
        respond_due_at=None if respond_open else respond_due,
        respond_warn_at=None if respond_open else respond_warn,
        responded_at=responded_at,
        respond_breached=not respond_open and _late(responded_at, now, respond_due),
        respond_business_time=elapsed(calendar, received, responded_at or now, pauses),
        paused=paused,
        cycles=cycles,
    )


def _late(done_at: dt.datetime | None, now: dt.datetime, due: dt.datetime) -> bool:
    """Done after the deadline, or not done and the deadline has come."""
    return done_at > due if done_at is not None else now >= due


def _cycle_bounds(steps: Sequence[Step]) -> list[tuple[dt.datetime, dt.datetime | None]]:
    bounds: list[tuple[dt.datetime, dt.datetime | None]] = []
    start: dt.datetime | None = steps[0].at
    for step in steps[1:]:
        if step.status == "confirmed" and start is not None:
            bounds.append((start, step.at))
            start = None
        elif step.status == "reopened" and start is None:
            start = step.at
    if start is not None:
        bounds.append((start, None))
    return bounds
