"""Complaint statistics from `complaint_figures`, the narrow row kept per complaint: one
grouped count over a few codes and flags gives every count and rate, folded here per
group and overall. Percentiles: on PostgreSQL from the counts of duration buckets (two
more grouped counts, within about 2.5%); on SQLite, exact, from the closed complaints'
durations by numpy."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.histogram import DURATION_COLUMNS, percentile
from services.complaints.models import Complaint, ComplaintFigures
from services.complaints.repository import RETURN_WINDOW
from services.complaints.schemas import ComplaintStats, Durations, ReturnRate, StatsGroup
from services.complaints.workflow import SEVERITIES, STATUSES
from shared.db import utcnow

# The practice's rules of thumb (domain.md): who buys again after a complaint.
PRACTICE = {
    "return_rate_major_resolved": 0.35,
    "return_rate_minor_resolved": 0.52,
    "return_rate_major_resolved_quickly": 0.52,
    "return_rate_minor_resolved_quickly": 0.95,
}
SPEEDS = {"within_sla": True, "late": False}
OVERALL = "*overall*"  # the key of the figures over every group (never a real group key)
# A closed complaint's return is judged once it came back or its window has passed.
OPEN, CLOSED_RECENTLY, CLOSED_LONG_AGO = 0, 1, 2
Percentiles = dict[str, tuple[float | None, float | None]]


async def complaint_stats(
    session: AsyncSession,
    *,
    period_from: dt.datetime | None,
    period_to: dt.datetime | None,
    severity: str | None,
    category: str | None,
    tier: str | None,
    owner: str | None,
    group_by: str | None,
) -> ComplaintStats:
    """Statistics of the complaints opened in the period, overall and per group."""
    filters = {"severity": severity, "category": category, "tier": tier, "owner": owner}
    figures = ComplaintFigures.__table__.c
    conditions: list[ColumnElement[bool]] = []
    if period_from is not None:
        conditions.append(figures.opened_at >= period_from)
    if period_to is not None:
        conditions.append(figures.opened_at < period_to)
    for name, value in filters.items():
        if value is not None:
            code: Any = SEVERITIES.index(value) if name == "severity" else value
            conditions.append(figures[name] == code)
    key = figures[group_by] if group_by is not None else None
    counts = await _counts(session, key, conditions)
    if session.get_bind().dialect.name == "postgresql":
        durations = await _histogram_percentiles(session, key, conditions)
    else:
        durations = await _numpy_percentiles(session, group_by, period_from, period_to, filters)
    groups = {
        group: _group(_key_name(group_by, group), row, durations.get(group, {}))
        for group, row in counts.items()
    }
    overall = groups.pop(OVERALL, None) or _group(None, {}, {})
    ordered = sorted(groups.values(), key=lambda group: (group.key is None, group.key or ""))
    return ComplaintStats(
        period_from=period_from,
        period_to=period_to,
        group_by=group_by,
        overall=overall,
        groups=ordered if group_by is not None else [],
        practice=PRACTICE,
    )


def _key_name(group_by: str | None, group: Any) -> str | None:
    """A group's key as the API names it (severities are kept as codes)."""
    if group == OVERALL or group is None:
        return None
    return SEVERITIES[group] if group_by == "severity" else str(group)


async def _counts(
    session: AsyncSession, key: Any, conditions: list[ColumnElement[bool]]
) -> dict[Any, dict[str, Any]]:
    """Every count and sum the figures need, per group and overall, from one grouped
    count over the codes and flags (a few hundred rows however many complaints)."""
    figures = ComplaintFigures.__table__.c
    closure = case(
        (figures.closed_at.is_(None), OPEN),
        (figures.closed_at > utcnow() - RETURN_WINDOW, CLOSED_RECENTLY),
        else_=CLOSED_LONG_AGO,
    ).label("closure")
    flags = [figures.status, figures.severity, figures.met_sla, figures.reopened, figures.returned]
    keys = [key, *flags, closure] if key is not None else [*flags, closure]
    rows = await session.execute(
        select(
            *keys,
            func.count().label("n"),
            func.coalesce(func.sum(figures.satisfaction), 0).label("satisfaction_sum"),
            func.count(figures.satisfaction).label("satisfaction_n"),
        )
        .where(*conditions)
        .group_by(*keys)
    )
    totals: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        status, severity, met, reopened, returned = (row[i + (key is not None)] for i in range(5))
        tallies = [totals[OVERALL]] + ([totals[row[0]]] if key is not None else [])
        for tally in tallies:
            _tally(tally, row, STATUSES[status], SEVERITIES[severity], met, reopened, returned)
    return totals


def _tally(
    tally: dict[str, Any],
    row: Any,
    status: str,
    severity: str,
    met: bool | None,
    reopened: bool,
    returned: bool,
) -> None:
    n = int(row.n)
    tally[f"status_{status}"] += n
    if row.closure == OPEN:
        return
    tally["closed"] += n
    tally["met"] += n if met else 0
    tally["reopened"] += n if reopened else 0
    tally["satisfaction_sum"] += int(row.satisfaction_sum)
    tally["satisfaction_n"] += int(row.satisfaction_n)
    if returned or row.closure == CLOSED_LONG_AGO:
        speed = "within_sla" if met else "late"
        tally[f"eligible_{severity}_{speed}"] += n
        tally[f"returned_{severity}_{speed}"] += n if returned else 0


async def _histogram_percentiles(
    session: AsyncSession, key: Any, conditions: list[ColumnElement[bool]]
) -> dict[Any, Percentiles]:
    """Median and 90th percentile of each duration, per group and overall, from the
    counts of their buckets: two grouped counts, each over a pair of bucket columns."""
    figures = ComplaintFigures.__table__.c
    counts: dict[Any, dict[str, dict[int, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for kind in ("respond", "resolve"):
        names = (f"{kind}_business_s", f"{kind}_wall_s")
        buckets = [figures[f"{name[:-2]}_bucket"] for name in names]
        keys = [key, *buckets] if key is not None else buckets
        rows = await session.execute(
            select(*keys, func.count().label("n"))
            .where(*conditions, figures.closed_at.is_not(None))
            .group_by(*keys)
        )
        for row in rows:
            groups = [OVERALL] + ([row[0]] if key is not None else [])
            for index, name in enumerate(names):
                bucket = row[index + (key is not None)]
                if bucket is None:
                    continue
                for group in groups:
                    counts[group][name][bucket] += row.n
    return {
        group: {
            name: (percentile(by_name.get(name, {}), 0.5), percentile(by_name.get(name, {}), 0.9))
            for name in DURATION_COLUMNS
        }
        for group, by_name in counts.items()
    }


async def _numpy_percentiles(
    session: AsyncSession,
    group_by: str | None,
    period_from: dt.datetime | None,
    period_to: dt.datetime | None,
    filters: dict[str, str | None],
) -> dict[Any, Percentiles]:
    """Median and 90th percentile of each duration, per group and overall (SQLite has no
    percentile_cont): the closed complaints' exact durations read once."""
    conditions: list[ColumnElement[bool]] = [Complaint.closed_at.is_not(None)]
    if period_from is not None:
        conditions.append(Complaint.opened_at >= period_from)
    if period_to is not None:
        conditions.append(Complaint.opened_at < period_to)
    for name, value in filters.items():
        if value is not None:
            conditions.append(getattr(Complaint, name) == value)
    key = getattr(Complaint, group_by) if group_by is not None else None
    columns = [getattr(Complaint, name) for name in DURATION_COLUMNS]
    raw = await session.execute(
        select(*([key] if key is not None else []), *columns).where(*conditions)
    )
    per_group: dict[Any, list[Any]] = defaultdict(list)
    for row in raw:
        figures = list(row[-len(DURATION_COLUMNS) :])
        per_group[OVERALL].append(figures)
        if key is not None:
            group = row[0]
            per_group[SEVERITIES.index(group) if group_by == "severity" else group].append(figures)
    return {group: _exact(rows) for group, rows in per_group.items()}


def _exact(rows: Iterable[list[Any]]) -> Percentiles:
    table = np.array(list(rows), dtype=float)
    found: Percentiles = {}
    for index, name in enumerate(DURATION_COLUMNS):
        column = table[:, index]
        column = column[~np.isnan(column)]
        found[name] = (
            (float(np.percentile(column, 50)), float(np.percentile(column, 90)))
            if column.size
            else (None, None)
        )
    return found


def _rate(returned: int, eligible: int) -> ReturnRate:
    return ReturnRate(
        returned=returned,
        eligible=eligible,
        rate=round(returned / eligible, 4) if eligible else None,
    )


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, 3)


def _durations(closed: int, figures: Percentiles, kind: str) -> Durations:
    business = figures.get(f"{kind}_business_s", (None, None))
    wall = figures.get(f"{kind}_wall_s", (None, None))
    return Durations(
        count=closed,
        median_business_hours=_hours(business[0]),
        p90_business_hours=_hours(business[1]),
        median_wall_hours=_hours(wall[0]),
        p90_wall_hours=_hours(wall[1]),
    )


def _group(key: str | None, row: dict[str, Any], figures: Percentiles) -> StatsGroup:
    closed = int(row.get("closed") or 0)
    by_status = {
        status: int(row[f"status_{status}"]) for status in STATUSES if row.get(f"status_{status}")
    }

    def counted(kind: str, severity: str | None = None, speed: str | None = None) -> int:
        return sum(
            int(row.get(f"{kind}_{s}_{v}") or 0)
            for s in SEVERITIES
            for v in SPEEDS
            if severity in (None, s) and speed in (None, v)
        )

    rated = int(row.get("satisfaction_n") or 0)
    return StatsGroup(
        key=key,
        opened=sum(by_status.values()),
        by_status=by_status,
        closed=closed,
        respond=_durations(closed, figures, "respond"),
        resolve=_durations(closed, figures, "resolve"),
        sla_compliance=round(int(row["met"]) / closed, 4) if closed else None,
        reopen_rate=round(int(row["reopened"]) / closed, 4) if closed else None,
        mean_satisfaction=round(row["satisfaction_sum"] / rated, 2) if rated else None,
        return_rate=_rate(counted("returned"), counted("eligible")),
        return_rate_by_severity={
            severity: _rate(counted("returned", severity), counted("eligible", severity))
            for severity in SEVERITIES
            if counted("eligible", severity)
        },
        return_rate_by_speed={
            speed: _rate(counted("returned", speed=speed), counted("eligible", speed=speed))
            for speed in SPEEDS
            if counted("eligible", speed=speed)
        },
    )
