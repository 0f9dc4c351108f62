"""Complaint statistics from `complaint_figures`, the narrow row kept per complaint: one
grouped count by its tally code gives every count and rate, folded here per group and
overall. Percentiles: on PostgreSQL from the counts of duration buckets (a grouped count
per duration, within about 2.5%); on SQLite, exact, from the closed complaints'
durations by numpy."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.histogram import DURATION_COLUMNS, percentile
from services.complaints.models import Complaint, ComplaintFigures
from services.complaints.repository import RETURN_WINDOW, Tally, tally_of
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
    conditions = _selected(figures, period_from, period_to, filters)
    key = figures[group_by] if group_by is not None else None
    counts = await _counts(session, key, conditions)
    if session.get_bind().dialect.name == "postgresql":
        durations = await _histogram_percentiles(session, key, conditions)
    else:
        durations = await _numpy_percentiles(session, group_by, period_from, period_to, filters)
    groups = {
        group: _group(_key_name(group), row, durations.get(group, {}))
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


def _selected(
    columns: Any,
    period_from: dt.datetime | None,
    period_to: dt.datetime | None,
    filters: dict[str, str | None],
) -> list[ColumnElement[bool]]:
    """The conditions for complaints opened in the period with the filters' values, on a
    table with those columns (the figures, or the complaints themselves)."""
    conditions: list[ColumnElement[bool]] = []
    if period_from is not None:
        conditions.append(columns.opened_at >= period_from)
    if period_to is not None:
        conditions.append(columns.opened_at < period_to)
    conditions += [columns[name] == value for name, value in filters.items() if value is not None]
    return conditions


def _key_name(group: Any) -> str | None:
    return None if group == OVERALL else group


async def _counts(
    session: AsyncSession, key: Any, conditions: list[ColumnElement[bool]]
) -> dict[Any, dict[str, Any]]:
    """Every count and sum the figures need, per group and overall, from one grouped
    count by the tally code and whether the return window has passed (a few hundred rows
    however many complaints)."""
    figures = ComplaintFigures.__table__.c
    # NULL while open; true once the return window after closure has passed.
    window_passed = (figures.closed_at <= utcnow() - RETURN_WINDOW).label("window_passed")
    keys = [figures.tally, window_passed] + ([key] if key is not None else [])
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
        tally = tally_of(row.tally)
        for group in (OVERALL, row[2]) if key is not None else (OVERALL,):
            _add(totals[group], row, tally)
    return totals


def _add(totals: dict[str, Any], row: Any, tally: Tally) -> None:
    n = int(row.n)
    totals[f"status_{tally.status}"] += n
    if row.window_passed is None:  # still open
        return
    totals["closed"] += n
    totals["met"] += n if tally.met_sla else 0
    totals["reopened"] += n if tally.reopened else 0
    totals["satisfaction_sum"] += int(row.satisfaction_sum)
    totals["satisfaction_n"] += int(row.satisfaction_n)
    if tally.returned or row.window_passed:
        speed = "within_sla" if tally.met_sla else "late"
        totals[f"eligible_{tally.severity}_{speed}"] += n
        totals[f"returned_{tally.severity}_{speed}"] += n if tally.returned else 0


async def _histogram_percentiles(
    session: AsyncSession, key: Any, conditions: list[ColumnElement[bool]]
) -> dict[Any, Percentiles]:
    """Median and 90th percentile of each duration, per group and overall, from the
    counts of their buckets: a grouped count per duration (a bucket is set once closed)."""
    figures = ComplaintFigures.__table__.c
    counts: dict[Any, dict[str, dict[int, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for name in DURATION_COLUMNS:
        bucket = figures[f"{name[:-2]}_bucket"]
        keys = [bucket] + ([key] if key is not None else [])
        rows = await session.execute(
            select(*keys, func.count().label("n"))
            .where(*conditions, bucket.is_not(None))
            .group_by(*keys)
        )
        for row in rows:
            for group in (OVERALL, row[1]) if key is not None else (OVERALL,):
                counts[group][name][row[0]] += row.n
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
    complaints = Complaint.__table__.c
    conditions = [
        complaints.closed_at.is_not(None),
        *_selected(complaints, period_from, period_to, filters),
    ]
    key = complaints[group_by] if group_by is not None else None
    columns = [getattr(Complaint, name) for name in DURATION_COLUMNS]
    raw = await session.execute(
        select(*([key] if key is not None else []), *columns).where(*conditions)
    )
    per_group: dict[Any, list[Any]] = defaultdict(list)
    for row in raw:
        figures = list(row[-len(DURATION_COLUMNS) :])
        per_group[OVERALL].append(figures)
        if key is not None:
            per_group[row[0]].append(figures)
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
