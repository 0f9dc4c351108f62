"""SLA arithmetic on a business calendar (weekends, China's public holidays and make-up
working Saturdays, company closed days), pauses and reopens; and its properties."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.schemas import CalendarDocument
from services.complaints.sla import BusinessCalendar, Step, Targets, clock, deadline, elapsed

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = CalendarDocument.model_validate(
    {
        "timezone": "Asia/Shanghai",
        "hours": {
            day: [["09:00", "12:00"], ["13:00", "18:00"]]
            for day in ("mon", "tue", "wed", "thu", "fri")
        },
        "country": "CN",
    }
).calendar()
AROUND_THE_CLOCK = BusinessCalendar()
TWO_HOURS = dt.timedelta(hours=2)


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI).astimezone(dt.UTC)


def test_across_a_weekend() -> None:
    friday_late = local(2026, 11, 27, 17)
    assert deadline(OFFICE, friday_late, TWO_HOURS) == local(2026, 11, 30, 10)


def test_lunch_is_not_working_time() -> None:
    assert deadline(OFFICE, local(2026, 11, 30, 11), TWO_HOURS) == local(2026, 11, 30, 14)


def test_across_public_holidays() -> None:
    # National Day 2026: 1-7 October off (the 4th a Sunday); work resumes on the 8th.
    assert deadline(OFFICE, local(2026, 9, 30, 17), TWO_HOURS) == local(2026, 10, 8, 10)


def test_on_a_make_up_working_saturday() -> None:
    # Saturday 10 October 2026 is worked in exchange for the 7th.
    assert deadline(OFFICE, local(2026, 10, 9, 17), TWO_HOURS) == local(2026, 10, 10, 10)


def test_company_closed_days_and_extra_working_days() -> None:
    closed = BusinessCalendar(
        zone=OFFICE.zone,
        hours=OFFICE.hours,
        country="CN",
        closed_days=frozenset({dt.date(2026, 11, 30)}),
        extra_working_days=frozenset({dt.date(2026, 11, 28)}),
    )
    # Friday 17:00 -> 1 h Friday, Saturday the 28th worked, Monday the 30th closed.
    assert deadline(closed, local(2026, 11, 27, 17), TWO_HOURS) == local(2026, 11, 28, 10)


def test_elapsed_counts_business_time_only() -> None:
    assert elapsed(OFFICE, local(2026, 11, 27, 17), local(2026, 11, 30, 10)) == TWO_HOURS
    assert elapsed(OFFICE, local(2026, 10, 1, 9), local(2026, 10, 7, 18)) == dt.timedelta(0)


T0 = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)
HOUR = Targets(respond=dt.timedelta(hours=1), resolve=dt.timedelta(hours=8))


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def test_a_pause_stops_the_clock_and_resumes_it() -> None:
    steps = [Step(T0, "received"), Step(minutes(20), "waiting_on_customer")]
    paused = clock(steps, HOUR, AROUND_THE_CLOCK, minutes(30))
    assert paused.paused and paused.respond_due_at is None and not paused.respond_breached
    # Two hours later, still paused: no breach, however long the customer takes.
    assert not clock(steps, HOUR, AROUND_THE_CLOCK, minutes(200)).breached
    resumed = clock([*steps, Step(minutes(60), "received")], HOUR, AROUND_THE_CLOCK, minutes(61))
    assert resumed.respond_due_at == minutes(100)  # 60 minutes plus the 40 paused
    assert resumed.current.due_at == minutes(480 + 40)


def test_the_respond_clock_stops_at_judged() -> None:
    steps = [Step(T0, "received"), Step(minutes(50), "judged")]
    answered = clock(steps, HOUR, AROUND_THE_CLOCK, minutes(500))
    assert not answered.respond_breached and answered.responded_at == minutes(50)
    assert answered.current.breached  # the resolve clock runs on until confirmed
    late = clock([Step(T0, "received"), Step(minutes(70), "judged")], HOUR, AROUND_THE_CLOCK, T0)
    assert late.respond_breached


def test_a_reopen_starts_a_new_resolve_cycle() -> None:
    steps = [
        Step(T0, "received"),
        Step(minutes(10), "judged"),
        Step(minutes(100), "confirmed"),
        Step(minutes(1000), "reopened"),
    ]
    state = clock(steps, HOUR, AROUND_THE_CLOCK, minutes(1001))
    first, second = state.cycles
    assert first.ended_at == minutes(100) and not first.breached
    assert first.business_time == dt.timedelta(minutes=100)
    assert second.started_at == minutes(1000) and second.due_at == minutes(1000 + 480)
    assert state.respond_due_at == minutes(60)  # the first answer still counts


# ---------------------------------------------------------------- properties
offsets = st.lists(st.integers(min_value=1, max_value=3000), min_size=0, max_size=8, unique=True)


def _steps(points: list[int], pause_at: set[int]) -> list[Step]:
    """Receipt at T0, then at each point a pause or a resume of the received status."""
    steps = [Step(T0, "received")]
    waiting = False
    for point in sorted(points):
        if point in pause_at and not waiting:
            steps.append(Step(minutes(point), "waiting_on_customer"))
            waiting = True
        elif waiting:
            steps.append(Step(minutes(point), "received"))
            waiting = False
    if waiting:
        steps.append(Step(minutes(max(points) + 1), "received"))
    return steps


@settings(max_examples=60, deadline=None)
@given(points=offsets, pauses=st.sets(st.integers(min_value=1, max_value=3000)))
def test_a_pause_never_moves_a_deadline_earlier(points: list[int], pauses: set[int]) -> None:
    now = minutes(5000)
    without = clock([Step(T0, "received")], HOUR, OFFICE, now)
    with_pauses = clock(_steps(points, pauses), HOUR, OFFICE, now)
    assert with_pauses.respond_due_at is not None and without.respond_due_at is not None
    assert with_pauses.respond_due_at >= without.respond_due_at
    assert with_pauses.current.due_at is not None and without.current.due_at is not None
    assert with_pauses.current.due_at >= without.current.due_at


@settings(max_examples=60, deadline=None)
@given(points=offsets, pauses=st.sets(st.integers(min_value=1, max_value=3000)))
def test_recomputing_from_the_history_is_idempotent(points: list[int], pauses: set[int]) -> None:
    steps = _steps(points, pauses)
    later = steps[-1].at + dt.timedelta(minutes=1)
    first = clock(steps, HOUR, OFFICE, later)
    assert clock(steps, HOUR, OFFICE, later) == first
    # The deadlines depend on the history, not on the moment they are computed.
    again = clock(steps, HOUR, OFFICE, later + dt.timedelta(days=3))
    assert (again.respond_due_at, again.current.due_at) == (
        first.respond_due_at,
        first.current.due_at,
    )


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=60 * 24 * 400),
    target=st.integers(min_value=1, max_value=60 * 200),
)
def test_elapsed_undoes_deadline(start: int, target: int) -> None:
    begin = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=start)
    due = deadline(OFFICE, begin, dt.timedelta(minutes=target))
    assert elapsed(OFFICE, begin, due) == dt.timedelta(minutes=target)
