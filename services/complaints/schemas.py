"""Complaints API in and out, and the SLA policy document."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import holidays
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from services.complaints import sla
from services.complaints.workflow import SEVERITIES, Severity, Status
from shared.fields import Day, JsonFloat, JsonInt, Label, LocalTime, TimeZoneName

UserName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
Channel = Literal["phone", "email", "sms", "visit", "letter", "web", "social", "other"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Minutes = Annotated[JsonFloat, Field(gt=0, le=525_600, examples=[240])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ the SLA policy
class SlaTarget(_Strict):
    """Time to respond (reach `judged`) and to resolve (reach `confirmed`), in business
    minutes, for one severity and one tier (`*`: any tier without a row of its own)."""

    severity: Severity
    tier: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "*"
    respond_minutes: Minutes
    resolve_minutes: Minutes


class CalendarDocument(_Strict):
    """Working hours per weekday in one time zone, minus public holidays of a country (with
    its make-up working days) and the company's closed days."""

    timezone: TimeZoneName = "Asia/Shanghai"
    hours: dict[Weekday, list[tuple[LocalTime, LocalTime]]] = Field(
        examples=[{day: [["09:00", "12:00"], ["13:00", "18:00"]] for day in WEEKDAYS[:5]}]
    )
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO country code of the public holidays (e.g. CN)."
    )
    subdivision: Annotated[str, StringConstraints(max_length=10)] | None = None
    closed_days: list[Day] = Field(default_factory=list, max_length=1000)
    extra_working_days: list[Day] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _workable(self) -> CalendarDocument:
        for day, spans in self.hours.items():
            for opens, closes in spans:
                if opens.tzinfo or closes.tzinfo:
                    raise ValueError(f"hours of {day}: local times, without a zone")
                if not (opens < closes or closes == dt.time(0)):
                    raise ValueError(f"hours of {day}: {opens} to {closes} is not a span")
        if not any(self.hours.values()):
            raise ValueError("hours: at least one weekday needs working hours")
        if self.country is not None:
            supported = holidays.list_supported_countries()
            if self.country not in supported:
                raise ValueError(f"country {self.country}: no public holidays known")
            if self.subdivision is not None and self.subdivision not in supported[self.country]:
                raise ValueError(f"subdivision {self.subdivision} is not one of {self.country}")
        return self

    def calendar(self) -> sla.BusinessCalendar:
        return sla.BusinessCalendar(
            zone=self.timezone,
            hours=tuple(tuple(sorted(self.hours.get(day, []))) for day in WEEKDAYS),
            country=self.country,
            subdivision=self.subdivision,
            closed_days=frozenset(self.closed_days),
            extra_working_days=frozenset(self.extra_working_days),
        )


class EscalationLevel(_Strict):
    """One rung of the ladder: who takes the complaint over for action on a breach."""

    name: Label
    assign_to: UserName


class SlaPolicyDocument(_Strict):
    """The SLA policy: targets by severity and tier, the business calendar they are
    counted on (none: around the clock), the warning point, the escalation ladder, and
    the satisfaction below which a confirmation reopens the complaint."""

    targets: list[SlaTarget] = Field(min_length=1, max_length=500)
    business_calendar: CalendarDocument | None = None
    warning_at: JsonFloat = Field(default=0.8, gt=0, lt=1)
    escalation: list[EscalationLevel] = Field(default_factory=list, max_length=10)
    reopen_below: JsonInt = Field(default=3, ge=1, le=5)

    @model_validator(mode="after")
    def _every_severity_covered(self) -> SlaPolicyDocument:
        seen = {(target.severity, target.tier) for target in self.targets}
        if len(seen) != len(self.targets):
            raise ValueError("targets: one row per severity and tier")
        missing = [severity for severity in SEVERITIES if (severity, "*") not in seen]
        if missing:
            raise ValueError(f"targets: a row with tier '*' is needed for {', '.join(missing)}")
        return self

    def targets_for(self, severity: str, tier: str | None) -> sla.Targets:
        rows: dict[tuple[str, str], SlaTarget] = {
            (target.severity, target.tier): target for target in self.targets
        }
        row = rows.get((severity, tier or "*")) or rows[(severity, "*")]
        return sla.Targets(
            respond=dt.timedelta(minutes=row.respond_minutes),
            resolve=dt.timedelta(minutes=row.resolve_minutes),
            warning_at=self.warning_at,
        )

    def calendar(self) -> sla.BusinessCalendar:
        if self.business_calendar is None:
            return sla.BusinessCalendar()
        return self.business_calendar.calendar()


def _office_hours() -> dict[Weekday, list[tuple[LocalTime, LocalTime]]]:
    return {day: [(dt.time(9), dt.time(18))] for day in WEEKDAYS[:5]}


DEFAULT_POLICY = SlaPolicyDocument(
    targets=[
        SlaTarget(severity="critical", tier="A", respond_minutes=30, resolve_minutes=4 * 60),
        SlaTarget(severity="critical", respond_minutes=60, resolve_minutes=9 * 60),
        SlaTarget(severity="major", tier="A", respond_minutes=2 * 60, resolve_minutes=9 * 60),
        SlaTarget(severity="major", respond_minutes=4 * 60, resolve_minutes=3 * 9 * 60),
        SlaTarget(severity="minor", respond_minutes=9 * 60, resolve_minutes=5 * 9 * 60),
    ],
    business_calendar=CalendarDocument(hours=_office_hours(), country="CN"),
    escalation=[
        EscalationLevel(name="team lead", assign_to="team-lead"),
        EscalationLevel(name="head of service", assign_to="head-of-service"),
    ],
)


class SlaPolicyOut(BaseModel):
    version: JsonInt
    document: SlaPolicyDocument
    created_at: dt.datetime
    created_by: str


# ------------------------------------------------------------------ complaints
class ComplaintCreate(_Strict):
    customer_id: uuid.UUID
    channel: Channel
    category: Label | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        max_length=10_000
    )
    severity: Severity = Field(
        default="minor", description="A first estimate; judging confirms or changes it."
    )
    received_by: UserName | None = Field(
        default=None,
        description="Who received the complaint (its first-contact owner); the caller "
        "when left out. Only an admin may name someone else.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "5c1e3a52-3f43-4b1f-9a57-1d5b3f0c2a11",
                    "channel": "phone",
                    "category": "delivery",
                    "description": "The last two deliveries arrived three days late.",
                    "severity": "major",
                }
            ]
        },
    )


class TransitionCreate(_Strict):
    """Move a complaint on. Each step records what it is about: judging sets severity and
    category, deciding the remedy and who carries it out, communicating what the customer
    was told, confirming the customer's satisfaction."""

    to: Status
    note: Note | None = None
    severity: Severity | None = None
    category: Label | None = None
    remedy: Note | None = None
    remedy_by: UserName | None = None
    satisfaction: JsonInt | None = Field(default=None, ge=1, le=5)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to": "judged", "severity": "major", "note": "late deliveries"}]
        },
    )


class HandOver(_Strict):
    """Give first-contact ownership to someone else, with the reason."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"to": "li.na", "reason": "speaks the customer's dialect"}]}
    )

    to: UserName
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Assignment(_Strict):
    """Who does the work now (the owner stays accountable)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"assignee": "field-service", "note": "needs a visit"}]}
    )

    assignee: UserName
    note: Note | None = None


class EntryOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    details: dict[str, Any]


class CycleOut(BaseModel):
    started_at: dt.datetime
    ended_at: dt.datetime | None
    resolve_by: dt.datetime | None
    breached: StrictBool
    business_hours: JsonFloat
    wall_hours: JsonFloat


class SlaOut(BaseModel):
    respond_by: dt.datetime | None
    responded_at: dt.datetime | None
    respond_breached: StrictBool
    resolve_by: dt.datetime | None
    resolve_breached: StrictBool
    paused: StrictBool
    cycles: list[CycleOut]


class ComplaintOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    channel: str
    category: str | None
    description: str | None
    severity: str
    tier: str | None
    status: str
    owner: str
    received_by: str
    assignee: str | None
    remedy: str | None
    remedy_by: str | None
    customer_told: str | None
    satisfaction: JsonInt | None
    escalation_level: JsonInt
    reopen_count: JsonInt
    opened_at: dt.datetime
    updated_at: dt.datetime
    closed_at: dt.datetime | None
    respond_by: dt.datetime | None
    resolve_by: dt.datetime | None
    breached: StrictBool
    allowed_moves: list[str]


class ComplaintDetail(ComplaintOut):
    sla: SlaOut
    history: list[EntryOut]


# ------------------------------------------------------------------ statistics
class Durations(BaseModel):
    """Hours to respond or resolve, over the complaints that got there."""

    count: JsonInt
    median_business_hours: JsonFloat | None
    p90_business_hours: JsonFloat | None
    median_wall_hours: JsonFloat | None
    p90_wall_hours: JsonFloat | None


class ReturnRate(BaseModel):
    """Complainants who bought again within 90 days of closure, over the closed complaints
    whose 90 days have passed (or who already came back)."""

    returned: JsonInt
    eligible: JsonInt
    rate: JsonFloat | None


class StatsGroup(BaseModel):
    key: str | None
    opened: JsonInt
    by_status: dict[str, int]
    closed: JsonInt
    respond: Durations
    resolve: Durations
    sla_compliance: JsonFloat | None
    reopen_rate: JsonFloat | None
    mean_satisfaction: JsonFloat | None
    return_rate: ReturnRate
    return_rate_by_severity: dict[str, ReturnRate]
    return_rate_by_speed: dict[str, ReturnRate]


class ComplaintStats(BaseModel):
    period_from: dt.datetime | None
    period_to: dt.datetime | None
    group_by: str | None
    overall: StatsGroup
    groups: list[StatsGroup]
    practice: dict[str, float] = Field(
        description="The practice's own return rates (domain.md), to read beside yours."
    )


StatsGroupBy = Literal["severity", "category", "tier", "owner"]
