"""Complaint statistics: one scan of the complaints per grouping, every figure an
aggregate with its own FILTER. Percentiles: on PostgreSQL from histogram counts made in
one more scan (GROUPING SETS over the duration buckets, within about 2.5%); on SQLite,
exact, from the closed complaints' figures by numpy."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.histogram import DURATION_COLUMNS, percentile
from services.complaints.models import Complaint
from services.complaints.repository import RETURN_WINDOW
from services.complaints.schemas import ComplaintStats, Durations, ReturnRate, StatsGroup
from services.complaints.workflow import FORWARD, SEVERITIES, WAITING
from shared.db import utcnow

# The practice's rules of thumb (domain.md): who buys again after a complaint.
PRACTICE = {
    "return_rate_major_resolved": 0.35,
    "return_rate_minor_resolved": 0.52,
    "return_rate_major_resolved_quickly": 0.52,
    "return_rate_minor_resolved_quickly": 0.95,
}
STATUSES = (*FORWARD, WAITING)
SPEEDS = {"within_sla": True, "late": False}
OVERALL = "*overall*"  # the key of the row over every group (never a real group key)
OVERALL_KEY: Any = literal_column(f"'{OVERALL}'")


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
    conditions: list[ColumnElement[bool]] = []
    if period_from is not None:
        conditions.append(Complaint.opened_at >= period_from)
    if period_to is not None:
        conditions.append(Complaint.opened_at < period_to)
    for column, value in (
        (Complaint.severity, severity),
        (Complaint.category, category),
        (Complaint.tier, tier),
        (Complaint.owner, owner),
    ):
        if value is not None:
            conditions.append(column == value)
    postgres = session.get_bind().dialect.name == "postgresql"
    keys: list[Any] = [OVERALL_KEY]
    if group_by is not None:
        keys.append(getattr(Complaint, group_by))
    groups: dict[str | None, StatsGroup] = {}
    for key in keys:
        groups.update(await _scan(session, key, conditions, postgres))
    overall = groups.pop(OVERALL, None) or _group(None, {}, {})
    ordered = sorted(groups.values(), key=lambda group: (group.key is None, group.key or ""))
    return ComplaintStats(
        period_from=period_from,
        period_to=period_to,
        group_by=group_by,
        overall=overall,
        groups=ordered,
        practice=PRACTICE,
    )


async def _scan(
    session: AsyncSession, key: Any, conditions: list[ColumnElement[bool]], postgres: bool
) -> dict[str | None, StatsGroup]:
    closed = Complaint.closed_at.is_not(None)
    eligible = closed & (
        Complaint.returned_at.is_not(None) | (Complaint.closed_at <= utcnow() - RETURN_WINDOW)
    )
    columns: dict[str, Any] = {
        "key": key,
        "closed": func.count().filter(closed),
        "met": func.count().filter(closed & Complaint.met_sla.is_(True)),
        "reopened": func.count().filter(closed & (Complaint.reopen_count > 0)),
        "satisfaction": func.avg(Complaint.satisfaction).filter(closed),
    }
    for status in STATUSES:
        columns[f"status_{status}"] = func.count().filter(Complaint.status == status)
    for severity in SEVERITIES:
        for speed, met in SPEEDS.items():
            bucket = eligible & (Complaint.severity == severity) & (Complaint.met_sla.is_(met))
            columns[f"eligible_{severity}_{speed}"] = func.count().filter(bucket)
            columns[f"returned_{severity}_{speed}"] = func.count().filter(
                bucket & Complaint.returned_at.is_not(None)
            )
    grouped = [] if key is OVERALL_KEY else [key]
    query = select(*(value.label(name) for name, value in columns.items())).where(*conditions)
    rows = (await session.execute(query.group_by(*grouped))).mappings().all()
    if postgres:
        durations = await _histogram_percentiles(session, key, grouped, [*conditions, closed])
    else:
        durations = await _numpy_percentiles(session, key, grouped, [*conditions, closed])
    return {row["key"]: _group(row["key"], dict(row), durations[row["key"]]) for row in rows}


async def _histogram_percentiles(
    session: AsyncSession, key: Any, grouped: list[Any], conditions: list[ColumnElement[bool]]
) -> dict[str | None, dict[str, tuple[float | None, float | None]]]:
    """Median and 90th percentile of each duration, per group, from the counts of their
    buckets: one scan, one hash aggregate per measure (GROUPING SETS)."""
    buckets = [getattr(Complaint, f"{name[:-2]}_bucket") for name in DURATION_COLUMNS]
    sets = [tuple_(*grouped, bucket) for bucket in buckets]
    rows = await session.execute(
        select(
            key.label("key"),
            func.grouping(*buckets).label("which"),
            *buckets,
            func.count().label("n"),
        )
        .where(*conditions)
        .group_by(func.grouping_sets(*sets))
    )
    counts: dict[str | None, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        # GROUPING(...) has a bit set for each bucket column left out of the row's set.
        index = next(i for i in range(len(buckets)) if not row.which >> (len(buckets) - 1 - i) & 1)
        value = row[2 + index]
        if value is not None:
            counts[row.key if grouped else OVERALL][DURATION_COLUMNS[index]][value] = row.n
    return {
        group: {
            name: (percentile(by_name.get(name, {}), 0.5), percentile(by_name.get(name, {}), 0.9))
            for name in DURATION_COLUMNS
        }
        for group, by_name in counts.items()
    }


async def _numpy_percentiles(
    session: AsyncSession, key: Any, grouped: list[Any], conditions: list[ColumnElement[bool]]
) -> dict[str | None, dict[str, tuple[float | None, float | None]]]:
    """Median and 90th percentile of each duration, per group (SQLite has no
    percentile_cont): the closed complaints' figures read once."""
    raw = await session.execute(
        select(key, *(getattr(Complaint, name) for name in DURATION_COLUMNS)).where(*conditions)
    )
    per_group: dict[str | None, list[Any]] = defaultdict(list)
    for group, *figures in raw:
        per_group[group if grouped else OVERALL].append(figures)
    found: dict[str | None, dict[str, tuple[float | None, float | None]]] = defaultdict(dict)
    for group, rows_of_group in per_group.items():
        table = np.array(rows_of_group, dtype=float)
        for index, name in enumerate(DURATION_COLUMNS):
            column = table[:, index]
            column = column[~np.isnan(column)]
            found[group][name] = (
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


def _durations(
    closed: int, figures: dict[str, tuple[float | None, float | None]], kind: str
) -> Durations:
    business = figures.get(f"{kind}_business_s", (None, None))
    wall = figures.get(f"{kind}_wall_s", (None, None))
    return Durations(
        count=closed,
        median_business_hours=_hours(business[0]),
        p90_business_hours=_hours(business[1]),
        median_wall_hours=_hours(wall[0]),
        p90_wall_hours=_hours(wall[1]),
    )


def _group(
    key: str | None,
    row: dict[str, Any],
    figures: dict[str, tuple[float | None, float | None]],
) -> StatsGroup:
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

    satisfaction = row.get("satisfaction")
    return StatsGroup(
        key=None if key == OVERALL else key,
        opened=sum(by_status.values()),
        by_status=by_status,
        closed=closed,
        respond=_durations(closed, figures, "respond"),
        resolve=_durations(closed, figures, "resolve"),
        sla_compliance=round(int(row["met"]) / closed, 4) if closed else None,
        reopen_rate=round(int(row["reopened"]) / closed, 4) if closed else None,
        mean_satisfaction=None if satisfaction is None else round(float(satisfaction), 2),
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
