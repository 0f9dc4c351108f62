"""Outreach API in and out: service plans, the calendar, tasks."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from shared.fields import Day, JsonInt, Label, LocalTime, Timestamp

UserName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Channel = Literal["sms", "email", "phone", "visit", "letter", "gift"]
AUTOMATED: frozenset[str] = frozenset({"sms", "email"})
# The consent a channel needs for marketing (visits and gifts are handed over in person).
CONSENT_OF: dict[str, str] = {"sms": "sms", "email": "email", "phone": "phone", "letter": "letter"}
Kind = Literal[
    "complaint_follow_up",
    "hand_over",
    "review",
    "birthday",
    "key_date",
    "repurchase",
    "revisit",
    "survey",
    "holiday",
    "club_event",
]
# When contacts compete for one customer's day, the lower number goes first.
PRIORITY: dict[str, int] = {
    "complaint_follow_up": 1,
    "hand_over": 2,
    "review": 3,
    "birthday": 4,
    "key_date": 5,
    "repurchase": 6,
    "revisit": 7,
    "survey": 8,
    "holiday": 9,
    "club_event": 10,
}
# Marketing contacts need consent, count against the budget and wait while a complaint is
# open; service contacts (and complaint follow-ups) are exempt.
MARKETING: frozenset[str] = frozenset(
    {"birthday", "key_date", "repurchase", "holiday", "club_event"}
)
TaskStatus = Literal[
    "pending", "deferred", "ready", "sending", "sent", "done", "skipped", "failed", "cancelled"
]
OPEN_STATUSES = ("pending", "deferred", "ready", "sending")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Strict):
    """At most `max` marketing contacts on `channel` in any `window_days` days."""

    channel: Channel
    max: JsonInt = Field(ge=0, le=1000)
    window_days: JsonInt = Field(ge=1, le=365)


class QuietHours(_Strict):
    """No automated contact between `start` and `end`, customer's local time (may span
    midnight); held until `end`, never dropped."""

    start: LocalTime = dt.time(21)
    end: LocalTime = dt.time(8)


class PlanDocument(_Strict):
    """How a tier is served: who owns the contact, how often, on which channel."""

    owner: Literal["account_manager", "specialist", "nobody"] = "nobody"
    specialist: UserName | None = Field(
        default=None, description="Who serves the tier when the owner is `specialist`."
    )
    revisit_days: JsonInt | None = Field(default=None, ge=1, le=730)
    survey_days: JsonInt | None = Field(default=None, ge=1, le=730)
    holiday_gifts: StrictBool = False
    channels: dict[Kind, Channel] = Field(default_factory=dict)
    birthday_lead_days: JsonInt = Field(default=3, ge=0, le=60)
    repurchase_lead_days: JsonInt = Field(default=3, ge=0, le=60)
    send_at: LocalTime = Field(
        default=dt.time(10), description="Local time of day a contact is due."
    )
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    budget: list[Budget] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> PlanDocument:
        if self.owner == "specialist" and self.specialist is None:
            raise ValueError("specialist: name who serves the tier when the owner is specialist")
        if self.send_at.tzinfo is not None:
            raise ValueError("send_at: a local time, without a zone")
        return self

    def channel_by_kind(self) -> dict[str, str]:
        """Every kind's channel: the plan's own, else the default."""
        chosen: dict[str, str] = dict(DEFAULT_CHANNELS)
        chosen.update(self.channels.items())
        return chosen

    def channel_for(self, kind: str) -> str:
        return self.channel_by_kind()[kind]


DEFAULT_CHANNELS: dict[str, Channel] = {
    "complaint_follow_up": "phone",
    "hand_over": "visit",
    "review": "phone",
    "birthday": "sms",
    "key_date": "email",
    "repurchase": "sms",
    "revisit": "phone",
    "survey": "email",
    "holiday": "sms",
    "club_event": "letter",
}
MARKETING_BUDGET = [
    Budget(channel="sms", max=2, window_days=7),
    Budget(channel="email", max=3, window_days=7),
    Budget(channel="phone", max=2, window_days=7),
]
DEFAULT_PLANS: dict[str, PlanDocument] = {
    "A": PlanDocument(
        owner="account_manager",
        revisit_days=30,
        survey_days=90,
        holiday_gifts=True,
        channels={"birthday": "gift", "revisit": "visit", "survey": "phone", "holiday": "gift"},
        budget=MARKETING_BUDGET,
    ),
    "B": PlanDocument(
        owner="specialist",
        specialist="service-team",
        revisit_days=60,
        survey_days=180,
        holiday_gifts=True,
        channels={"holiday": "sms"},
        budget=MARKETING_BUDGET,
    ),
    "*": PlanDocument(
        revisit_days=180, survey_days=365, channels={"revisit": "email"}, budget=MARKETING_BUDGET
    ),
}
TOP_TIER = "A"


class PlanOut(BaseModel):
    tier: str
    document: PlanDocument
    updated_at: dt.datetime | None
    updated_by: str | None


class CalendarCreate(_Strict):
    """A company date or a club event; customers of the invited tiers get a task."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "on": "2027-03-18",
                    "kind": "club_event",
                    "name": "Spring tasting",
                    "tiers": ["A", "B"],
                    "channel": "letter",
                }
            ]
        }
    )

    on: Day
    kind: Literal["company", "club_event"]
    name: Label
    tiers: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] = Field(
        min_length=1, max_length=20
    )
    channel: Channel = "letter"


class CalendarEntryOut(BaseModel):
    id: uuid.UUID | None
    on: Day
    kind: str
    name: str
    tiers: list[str]
    channel: str


class TaskOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    occasion: str
    channel: str
    marketing: StrictBool
    priority: JsonInt
    due_at: dt.datetime
    status: str
    assignee: str | None
    basis: dict[str, Any]
    decisions: list[Any]
    attempts: JsonInt
    provider_response: dict[str, Any] | None
    outcome: str | None
    notes: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    completed_at: dt.datetime | None


class UpcomingContact(BaseModel):
    """A contact of a customer's coming year: a task already (with its id and status), or
    one the plan will make a task when the planning window reaches it (`planned`)."""

    task_id: uuid.UUID | None
    status: str
    kind: str
    occasion: str
    channel: str
    marketing: StrictBool
    due_at: dt.datetime
    assignee: str | None
    basis: dict[str, Any]


class Upcoming(BaseModel):
    customer_id: uuid.UUID
    planned_until: dt.datetime = Field(description="Contacts due up to here are listed.")
    tasks_until: dt.datetime = Field(
        description="Planned contacts due up to here are tasks already (the planning window)."
    )
    items: list[UpcomingContact]


class TaskCompletion(_Strict):
    """What came of a contact made by hand (a call, visit, letter or gift)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"outcome": "done", "notes": "Wants a quote in May."}]}
    )

    outcome: Literal["done", "failed", "skipped"] = "done"
    notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] | None = None


class TaskReschedule(_Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"due_at": "2026-12-08T10:00:00+08:00", "reason": "away until Monday"}]
        }
    )

    due_at: Timestamp = Field(description="RFC 3339 with a zone, e.g. 2026-12-01T10:00:00+08:00")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class TaskReassign(_Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"assignee": "noah", "reason": "covers East China"}]}
    )

    assignee: UserName
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class FeedOut(BaseModel):
    """The secret address of an assignee's worklist as an iCalendar feed."""

    url: str
    assignee: str
    created_at: dt.datetime
