"""What contacts a customer's plan and calendar ask for over the coming year: a pure
function of what outreach knows of the customer, the plan of its tier and the calendar.

Each planned contact names its occasion (`birthday:self:2027`, `repurchase:tea:2026-11-02`,
`holiday:2027-01-01:New Year's Day`, ...): the same occasion makes one task, never two,
however often a customer is planned again. (Revisits and surveys recur from the last one
done: the service numbers them, `revisit:3`, and keeps one open at a time.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.outreach.occasions import GREGORIAN, local_moment, local_today, next_anniversary
from services.outreach.schemas import MARKETING, PRIORITY, PlanDocument

HORIZON = dt.timedelta(days=366)
# With fewer purchases than this in a category, the category's typical cycle is used.
MIN_OWN_PURCHASES = 3
DEFAULT_ZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class PlannedTask:
    kind: str
    occasion: str
    channel: str
    due_at: dt.datetime
    assignee: str | None
    basis: dict[str, Any] = field(default_factory=dict)

    @property
    def marketing(self) -> bool:
        return self.kind in MARKETING

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]


@dataclass(frozen=True)
class CustomerFacts:
    """What outreach knows of one customer, as planning needs it."""

    timezone: str | None
    birthday: dt.date | None
    birthday_calendar: str | None
    key_dates: Sequence[dict[str, Any]]
    contacts: Sequence[dict[str, Any]]
    account_manager: str | None
    tier: str | None


@dataclass(frozen=True)
class Cycle:
    """One category's purchases of a customer: count, first and last."""

    category: str
    purchases: int
    first_at: dt.datetime
    last_at: dt.datetime


@dataclass(frozen=True)
class Occasion:
    """A dated occasion on the calendar: a public holiday, a company date, a club event."""

    on: dt.date
    kind: str  # holiday | company | club_event
    name: str
    tiers: Sequence[str] | None  # None: every tier whose plan sends holiday gifts
    channel: str | None


def assignee_for(plan: PlanDocument, facts: CustomerFacts) -> str | None:
    if plan.owner == "account_manager":
        return facts.account_manager
    if plan.owner == "specialist":
        return plan.specialist
    return None


def plan_customer(
    facts: CustomerFacts,
    plan: PlanDocument,
    *,
    now: dt.datetime,
    until: dt.datetime | None = None,
    cycles: Iterable[Cycle] = (),
    typical_days: dict[str, float] | None = None,
    last_revisit: dt.datetime | None = None,
    last_survey: dt.datetime | None = None,
    calendar: Iterable[Occasion] = (),
) -> list[PlannedTask]:
    """The contacts due from `now` to `until` (at most a year on; the default), and the next
    revisit, survey and repurchase within them."""
    end = min(until, now + HORIZON) if until is not None else now + HORIZON
    zone = facts.timezone or DEFAULT_ZONE
    today = local_today(now, zone)
    owner = assignee_for(plan, facts)
    channels = plan.channel_by_kind()
    planned: list[PlannedTask] = []

    def due_on(day: dt.date) -> dt.datetime | None:
        due = local_moment(day, plan.send_at, zone)
        return due if now <= due <= end else None

    def add(
        kind: str, occasion: str, due: dt.datetime, basis: dict[str, Any], channel: str | None
    ) -> None:
        planned.append(PlannedTask(kind, occasion, channel or channels[kind], due, owner, basis))

    def yearly(kind: str, who: str, born: dt.date, calendar_name: str | None, label: str) -> None:
        # `lead` days ahead; when that moment has passed (a customer met days before, or
        # planned after the sending hour), on the day itself; when that has passed too,
        # the next year's.
        lead = dt.timedelta(days=plan.birthday_lead_days)
        calendar_kind = calendar_name or GREGORIAN
        day = next_anniversary(born, today, calendar_kind)
        due = due_on(day - lead) or due_on(day)
        if due is None and day - lead <= today:
            day = next_anniversary(born, day + dt.timedelta(days=1), calendar_kind)
            due = due_on(day - lead)
        if due is not None:
            basis = {"date": day.isoformat(), "of": label, "calendar": calendar_kind}
            add(kind, f"{kind}:{who}:{day.year}", due, basis, None)

    if facts.birthday is not None:
        yearly("birthday", "self", facts.birthday, facts.birthday_calendar, "the customer")
    for index, key_date in enumerate(facts.key_dates):
        yearly(
            "key_date",
            f"self{index}",
            dt.date.fromisoformat(str(key_date["date"])),
            key_date.get("calendar"),
            str(key_date.get("label", "key date")),
        )
    for contact in facts.contacts:
        if contact.get("birthday"):
            yearly(
                "birthday",
                str(contact["id"]),
                dt.date.fromisoformat(str(contact["birthday"])),
                contact.get("birthday_calendar"),
                str(contact.get("name", "a contact")),
            )

    for kind, every, last in (
        ("revisit", plan.revisit_days, last_revisit),
        ("survey", plan.survey_days, last_survey),
    ):
        if every:
            day = max(today, local_today((last or now) + dt.timedelta(days=every), zone))
            due = due_on(day)
            if due is not None:
                add(kind, f"{kind}:{day.isoformat()}", due, {"every_days": every}, None)

    for cycle in cycles:
        reminder = _repurchase(cycle, plan, owner, zone, typical_days or {}, channels)
        if reminder is not None and now <= reminder.due_at <= end:
            planned.append(reminder)

    for occasion in calendar:
        invited = plan.holiday_gifts if occasion.tiers is None else facts.tier in occasion.tiers
        due = due_on(occasion.on) if invited else None
        if due is not None:
            kind = "holiday" if occasion.kind in ("holiday", "company") else "club_event"
            add(
                kind,
                f"{kind}:{occasion.on.isoformat()}:{occasion.name}",
                due,
                {"occasion": occasion.name, "date": occasion.on.isoformat()},
                occasion.channel,
            )
    return planned


def _repurchase(
    cycle: Cycle,
    plan: PlanDocument,
    owner: str | None,
    zone: str,
    typical_days: dict[str, float],
    channels: dict[str, str],
) -> PlannedTask | None:
    """A reminder a lead time before the predicted next purchase of a category, from the
    customer's own interval, or the category's typical one when it has too few."""
    if cycle.purchases >= MIN_OWN_PURCHASES:
        interval = (cycle.last_at - cycle.first_at).total_seconds() / 86400 / (cycle.purchases - 1)
        source = "own"
    elif cycle.category in typical_days:
        interval = typical_days[cycle.category]
        source = "category"
    else:
        return None
    if interval < 1:
        return None
    predicted = cycle.last_at + dt.timedelta(days=interval)
    day = local_today(predicted, zone) - dt.timedelta(days=plan.repurchase_lead_days)
    return PlannedTask(
        "repurchase",
        f"repurchase:{cycle.category}:{cycle.last_at.date().isoformat()}",
        channels["repurchase"],
        local_moment(day, plan.send_at, zone),
        owner,
        {
            "category": cycle.category,
            "predicted_at": predicted.isoformat(),
            "interval_days": round(interval, 1),
            "from": source,
            "purchases": cycle.purchases,
            "last_purchase_at": cycle.last_at.isoformat(),
        },
    )
