"""Dates that come back every year (Gregorian, lunar, 29 February), due moments in the
customer's own zone (with and without DST), the planner, and the guardrails."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from services.outreach.dispatcher import judge, quiet_until
from services.outreach.models import Recipient, Task
from services.outreach.occasions import LUNAR, anniversary, local_moment, next_anniversary
from services.outreach.planner import CustomerFacts, Cycle, Occasion, plan_customer
from services.outreach.schemas import DEFAULT_PLANS, PlanDocument, QuietHours

UTC = dt.UTC


def test_gregorian_and_leap_day_birthdays() -> None:
    assert anniversary(dt.date(1990, 3, 15), 2027) == dt.date(2027, 3, 15)
    assert anniversary(dt.date(1980, 2, 29), 2027) == dt.date(2027, 2, 28)
    assert anniversary(dt.date(1980, 2, 29), 2028) == dt.date(2028, 2, 29)
    assert next_anniversary(dt.date(1990, 3, 15), dt.date(2026, 12, 1)) == dt.date(2027, 3, 15)
    assert next_anniversary(dt.date(1990, 3, 15), dt.date(2026, 3, 15)) == dt.date(2026, 3, 15)


def test_lunar_birthdays_follow_the_lunar_calendar() -> None:
    # Born 15 March 1990 = lunar 2nd month, 19th day. The 2nd lunar month begins about
    # 30 days after the Spring Festival (6 February 2027, 26 January 2028), so its 19th
    # day is 26 March 2027 and 14 March 2028: the Gregorian date moves, the lunar stays.
    born = dt.date(1990, 3, 15)
    assert anniversary(born, 2027, LUNAR) == dt.date(2027, 3, 26)
    assert anniversary(born, 2028, LUNAR) == dt.date(2028, 3, 14)
    # Lunar New Year's Day (1 January lunar) comes back as the Spring Festival.
    assert anniversary(dt.date(2026, 2, 17), 2027, LUNAR) == dt.date(2027, 2, 6)
    # A lunar date early in a lunar year may fall in the next Gregorian year's January.
    assert next_anniversary(dt.date(2026, 2, 17), dt.date(2026, 3, 1), LUNAR) == dt.date(2027, 2, 6)


def test_due_moments_in_the_customers_zone_across_dst() -> None:
    ten = dt.time(10)
    # New York moves its clocks on 8 March 2026: 10:00 local is 15:00 UTC before, 14:00 after.
    assert local_moment(dt.date(2026, 3, 7), ten, "America/New_York") == dt.datetime(
        2026, 3, 7, 15, tzinfo=UTC
    )
    assert local_moment(dt.date(2026, 3, 9), ten, "America/New_York") == dt.datetime(
        2026, 3, 9, 14, tzinfo=UTC
    )
    # The hour skipped by the change moves on by the gap.
    assert local_moment(dt.date(2026, 3, 8), dt.time(2, 30), "America/New_York") == dt.datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )
    # Shanghai has no DST: always UTC+8.
    for day in (dt.date(2026, 3, 7), dt.date(2026, 7, 1), dt.date(2026, 12, 1)):
        assert local_moment(day, ten, "Asia/Shanghai") == dt.datetime.combine(day, dt.time(2), UTC)


def facts(**values: Any) -> CustomerFacts:
    base: dict[str, Any] = {
        "timezone": "Asia/Shanghai",
        "birthday": None,
        "birthday_calendar": None,
        "key_dates": [],
        "contacts": [],
        "account_manager": "mia",
        "tier": "A",
    }
    return CustomerFacts(**{**base, **values})


NOW = dt.datetime(2026, 11, 30, 4, tzinfo=UTC)  # noon in Shanghai


def test_birthdays_are_planned_days_before_in_the_local_morning() -> None:
    plan = PlanDocument(birthday_lead_days=3, channels={"birthday": "sms"})
    planned = plan_customer(
        facts(
            birthday=dt.date(1980, 2, 29),
            contacts=[
                {"id": "c1", "name": "Li", "birthday": "1975-12-25", "birthday_calendar": None}
            ],
        ),
        plan,
        now=NOW,
    )
    by_occasion = {task.occasion: task for task in planned}
    mine = by_occasion["birthday:self:2027"]
    # 28 February 2027 (no 29th), three days before, 10:00 in Shanghai.
    assert mine.due_at == dt.datetime(2027, 2, 25, 2, tzinfo=UTC)
    assert mine.basis["date"] == "2027-02-28" and mine.channel == "sms" and mine.marketing
    contact = by_occasion["birthday:c1:2026"]
    assert contact.due_at == dt.datetime(2026, 12, 22, 2, tzinfo=UTC)
    # Planning again gives the same occasions: one task per birthday per year.
    assert {
        t.occasion for t in plan_customer(facts(birthday=dt.date(1980, 2, 29)), plan, now=NOW)
    } == {"birthday:self:2027"} | {t.occasion for t in planned if t.kind != "birthday"}


def test_a_birthday_inside_the_lead_days_is_greeted_on_the_day() -> None:
    """Met (or planned) after the lead moment: greeted on the birthday itself, at the
    sending hour; after that hour on the day: the next year's, days ahead again."""
    plan = PlanDocument(birthday_lead_days=3, channels={"birthday": "sms"})

    def birthdays(born: dt.date) -> list[tuple[str, dt.datetime]]:
        planned = plan_customer(facts(birthday=born), plan, now=NOW)  # noon in Shanghai
        return [(t.occasion, t.due_at) for t in planned if t.kind == "birthday"]

    # In two days: on the day, 10:00 in Shanghai (not skipped until next year).
    assert birthdays(dt.date(1980, 12, 2)) == [
        ("birthday:self:2026", dt.datetime(2026, 12, 2, 2, tzinfo=UTC))
    ]
    # In three days: three days before was 10:00 today, two hours ago: on the day.
    assert birthdays(dt.date(1980, 12, 3)) == [
        ("birthday:self:2026", dt.datetime(2026, 12, 3, 2, tzinfo=UTC))
    ]
    # Today, after 10:00: next year's, three days before.
    assert birthdays(dt.date(1980, 11, 30)) == [
        ("birthday:self:2027", dt.datetime(2027, 11, 27, 2, tzinfo=UTC))
    ]


def test_plan_owner_cadence_and_holidays() -> None:
    a_plan = DEFAULT_PLANS["A"]
    planned = plan_customer(
        facts(),
        a_plan,
        now=NOW,
        calendar=[
            Occasion(dt.date(2027, 1, 1), "holiday", "New Year's Day", None, None),
            Occasion(dt.date(2027, 3, 1), "club_event", "Spring gala", ["A"], "letter"),
            Occasion(dt.date(2027, 4, 1), "club_event", "B-only seminar", ["B"], "letter"),
        ],
    )
    kinds = {task.kind: task for task in planned}
    assert kinds["revisit"].due_at == dt.datetime(2026, 12, 30, 2, tzinfo=UTC)
    assert kinds["revisit"].channel == "visit" and kinds["revisit"].assignee == "mia"
    assert kinds["holiday"].channel == "gift"  # the A plan sends holiday gifts
    assert kinds["club_event"].basis["occasion"] == "Spring gala"
    assert "B-only seminar" not in {t.basis.get("occasion") for t in planned}
    rest = plan_customer(
        facts(tier="C"),
        DEFAULT_PLANS["*"],
        now=NOW,
        calendar=[Occasion(dt.date(2027, 1, 1), "holiday", "New Year's Day", None, None)],
    )
    assert "holiday" not in {t.kind for t in rest}  # no holiday gifts for the rest


def test_repurchase_from_own_cycle_or_the_category() -> None:
    plan = PlanDocument(repurchase_lead_days=2)
    # Four purchases over 45 days: every 15 days; the last 5 days ago -> due in 10 days,
    # reminded 2 days before.
    own = Cycle("formula", 4, NOW - dt.timedelta(days=50), NOW - dt.timedelta(days=5))
    (task,) = plan_customer(facts(), plan, now=NOW, cycles=[own])
    assert task.basis["interval_days"] == 15.0 and task.basis["from"] == "own"
    assert task.basis["predicted_at"] == (NOW + dt.timedelta(days=10)).isoformat()
    assert task.due_at.date() == (NOW + dt.timedelta(days=8)).date()
    assert task.occasion == f"repurchase:formula:{own.last_at.date().isoformat()}"
    # When the predicted date has passed the lead time, there is nothing to remind.
    late = Cycle("formula", 4, NOW - dt.timedelta(days=60), NOW - dt.timedelta(days=15))
    assert plan_customer(facts(), plan, now=NOW, cycles=[late]) == []
    fresh = Cycle("tea", 1, NOW - dt.timedelta(days=1), NOW - dt.timedelta(days=1))
    (by_category,) = plan_customer(
        facts(), plan, now=NOW, cycles=[fresh], typical_days={"tea": 21.0}
    )
    assert by_category.basis["from"] == "category"
    predicted = dt.datetime.fromisoformat(by_category.basis["predicted_at"])
    assert predicted == fresh.last_at + dt.timedelta(days=21)
    assert by_category.due_at.date() == (predicted - dt.timedelta(days=2)).date()
    assert plan_customer(facts(), plan, now=NOW, cycles=[fresh]) == []  # nothing to go on


# ---------------------------------------------------------------- guardrails
def recipient(**values: Any) -> Recipient:
    base: dict[str, Any] = {
        "customer_id": uuid.uuid4(),
        "timezone": "Asia/Shanghai",
        "consent": {"sms": "granted", "email": "granted"},
        "contacts": [{"id": "c1", "phone": "+86 1", "email": "a@b.c", "decision_maker": True}],
        "erased_at": None,
        "tier": "A",
    }
    return Recipient(**{**base, **values})


def task(kind: str = "birthday", channel: str = "sms", **values: Any) -> Task:
    return Task(
        id=uuid.uuid4(),
        kind=kind,
        channel=channel,
        marketing=kind in ("birthday", "holiday", "repurchase", "key_date", "club_event"),
        occasion=f"{kind}:self:2026",
        **values,
    )


PLAN = PlanDocument(
    budget=[{"channel": "sms", "max": 2, "window_days": 7}],  # type: ignore[list-item]
    quiet_hours=QuietHours(start=dt.time(21), end=dt.time(8)),
)
NOON_SHANGHAI = dt.datetime(2026, 12, 1, 4, tzinfo=UTC)


def test_quiet_hours_span_midnight() -> None:
    quiet = QuietHours(start=dt.time(21), end=dt.time(8))
    late = dt.datetime(2026, 12, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert quiet_until(late, "Asia/Shanghai", quiet) == dt.datetime(2026, 12, 2, 0, tzinfo=UTC)
    early = dt.datetime(2026, 12, 1, 18, tzinfo=UTC)  # 02:00 on the 2nd in Shanghai
    assert quiet_until(early, "Asia/Shanghai", quiet) == dt.datetime(2026, 12, 2, 0, tzinfo=UTC)
    assert quiet_until(NOON_SHANGHAI, "Asia/Shanghai", quiet) is None
    verdict = judge(task(), recipient(), PLAN, False, [], late)
    assert verdict.action == "defer" and verdict.until == dt.datetime(2026, 12, 2, 0, tzinfo=UTC)
    # Calls and visits are made by people, at their hours: quiet hours are for automated sends.
    assert judge(task("revisit", "phone"), recipient(), PLAN, False, [], late).action == "go"


def test_consent_is_checked_at_send_time() -> None:
    assert judge(task(), recipient(), PLAN, False, [], NOON_SHANGHAI).action == "go"
    withdrawn = recipient(consent={"sms": "withdrawn"})
    verdict = judge(task(), withdrawn, PLAN, False, [], NOON_SHANGHAI)
    assert verdict.action == "skip" and "no consent for sms" in verdict.reason
    # Service contacts are not marketing.
    assert judge(task("revisit", "sms"), withdrawn, PLAN, False, [], NOON_SHANGHAI).action == "go"


def test_the_budget_is_a_rolling_window() -> None:
    sent = [
        (uuid.uuid4(), "sms", True, NOON_SHANGHAI - dt.timedelta(days=6), "holiday"),
        (uuid.uuid4(), "sms", True, NOON_SHANGHAI - dt.timedelta(days=1), "repurchase"),
    ]
    verdict = judge(task(), recipient(), PLAN, False, sent, NOON_SHANGHAI)
    # The older of the two leaves the 7-day window a day from now: held until then.
    assert verdict.action == "defer"
    assert verdict.until == NOON_SHANGHAI + dt.timedelta(days=1)
    a_week_later = NOON_SHANGHAI + dt.timedelta(days=1, seconds=1)
    assert judge(task(), recipient(), PLAN, False, sent, a_week_later).action == "go"
    # Email has its own budget; complaint follow-ups are exempt.
    assert (
        judge(task(channel="email"), recipient(), PLAN, False, sent[:1], NOON_SHANGHAI).action
        == "go"
    )


def test_no_marketing_while_a_complaint_is_open() -> None:
    verdict = judge(task(), recipient(), PLAN, True, [], NOON_SHANGHAI)
    assert verdict.action == "hold"
    follow_up = task("complaint_follow_up", "phone")
    assert judge(follow_up, recipient(), PLAN, True, [], NOON_SHANGHAI).action == "go"


def test_one_contact_a_day_by_priority() -> None:
    earlier = [(uuid.uuid4(), "phone", False, NOON_SHANGHAI - dt.timedelta(hours=1), "revisit")]
    verdict = judge(task(), recipient(), PLAN, False, earlier, NOON_SHANGHAI)
    assert verdict.action == "defer" and "revisit went first" in verdict.reason
    assert verdict.until == dt.datetime(2026, 12, 2, 2, tzinfo=UTC)  # tomorrow, 10:00 local
    # A complaint follow-up never waits for another contact.
    urgent = task("complaint_follow_up", "phone")
    assert judge(urgent, recipient(), PLAN, False, earlier, NOON_SHANGHAI).action == "go"


def test_erased_customers_get_nothing() -> None:
    gone = recipient(erased_at=NOON_SHANGHAI)
    assert judge(task(), gone, PLAN, False, [], NOON_SHANGHAI).action == "cancel"
