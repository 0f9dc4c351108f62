"""Complaint statistics, computed by the database in a few grouped queries (percentiles by
`percentile_cont` on PostgreSQL; on SQLite from the closed complaints' figures by numpy)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints.models import Complaint
from services.complaints.repository import RETURN_WINDOW
from services.complaints.schemas import ComplaintStats, Durations, ReturnRate, StatsGroup
from shared.db import utcnow

# The practice's rules of thumb (domain.md): who buys again after a complaint.
PRACTICE = {
    "return_rate_major_resolved": 0.35,
    "return_rate_minor_resolved": 0.52,
    "return_rate_major_resolved_quickly": 0.52,
    "return_rate_minor_resolved_quickly": 0.95,
}
DURATION_COLUMNS = ("respond_business_s", "respond_wall_s", "resolve_business_s", "resolve_wall_s")
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
    keys: list[Any] = [OVERALL_KEY]
    if group_by is not None:
        keys.append(getattr(Complaint, group_by))
    figures: dict[str | None, dict[str, Any]] = defaultdict(dict)
    for key_column in keys:
        await _status_counts(session, key_column, conditions, figures)
        await _closed_figures(session, key_column, conditions, figures)
        await _return_rates(session, key_column, conditions, figures)
    groups = [_group(key, values) for key, values in figures.items() if key != OVERALL]
    groups.sort(key=lambda group: (group.key is None, group.key or ""))
    return ComplaintStats(
        period_from=period_from,
        period_to=period_to,
        group_by=group_by,
        overall=_group(None, figures.get(OVERALL, {})),
        groups=groups,
        practice=PRACTICE,
    )


def _grouped(key: Any) -> list[Any]:
    """GROUP BY terms for a key column (none for the overall row's constant key)."""
    return [] if key is OVERALL_KEY else [key]


async def _status_counts(
    session: AsyncSession,
    key: Any,
    conditions: list[ColumnElement[bool]],
    figures: dict[str | None, dict[str, Any]],
) -> None:
    rows = await session.execute(
        select(key.label("key"), Complaint.status, func.count())
        .where(*conditions)
        .group_by(*_grouped(key), Complaint.status)
    )
    for group, status, count in rows:
        figures[group].setdefault("by_status", {})[status] = count


async def _closed_figures(
    session: AsyncSession,
    key: Any,
    conditions: list[ColumnElement[bool]],
    figures: dict[str | None, dict[str, Any]],
) -> None:
    closed = [*conditions, Complaint.closed_at.is_not(None)]
    columns: list[Any] = [
        key.label("key"),
        func.count().label("closed"),
        func.sum(case((Complaint.met_sla.is_(True), 1), else_=0)).label("met"),
        func.sum(case((Complaint.reopen_count > 0, 1), else_=0)).label("reopened"),
        func.avg(Complaint.satisfaction).label("satisfaction"),
    ]
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        for name in DURATION_COLUMNS:
            column = getattr(Complaint, name)
            columns.append(func.percentile_cont(0.5).within_group(column).label(f"{name}_p50"))
            columns.append(func.percentile_cont(0.9).within_group(column).label(f"{name}_p90"))
    rows = await session.execute(select(*columns).where(*closed).group_by(*_grouped(key)))
    for row in rows.mappings():
        values = figures[row["key"]]
        values.update(
            closed=row["closed"],
            met=row["met"] or 0,
            reopened=row["reopened"] or 0,
            satisfaction=row["satisfaction"],
        )
        if postgres:
            for name in DURATION_COLUMNS:
                values[name] = (row[f"{name}_p50"], row[f"{name}_p90"])
    if not postgres:
        raw = await session.execute(
            select(
                key.label("key"), *(getattr(Complaint, name) for name in DURATION_COLUMNS)
            ).where(*closed)
        )
        per_group: dict[str | None, list[Any]] = defaultdict(list)
        for group, *durations in raw:
            per_group[group].append(durations)
        for group, rows_of_group in per_group.items():
            table = np.array(rows_of_group, dtype=float)
            for index, name in enumerate(DURATION_COLUMNS):
                column = table[:, index]
                column = column[~np.isnan(column)]
                figures[group][name] = (
                    (float(np.percentile(column, 50)), float(np.percentile(column, 90)))
                    if column.size
                    else (None, None)
                )


async def _return_rates(
    session: AsyncSession,
    key: Any,
    conditions: list[ColumnElement[bool]],
    figures: dict[str | None, dict[str, Any]],
) -> None:
    """Returned / eligible by group, severity and speed (resolved within the SLA or not)."""
    window_passed = Complaint.closed_at <= utcnow() - RETURN_WINDOW
    eligible = [
        *conditions,
        Complaint.closed_at.is_not(None),
        Complaint.returned_at.is_not(None) | window_passed,
    ]
    rows = await session.execute(
        select(
            key.label("key"),
            Complaint.severity,
            Complaint.met_sla,
            func.count(),
            func.count(Complaint.returned_at),
        )
        .where(*eligible)
        .group_by(*_grouped(key), Complaint.severity, Complaint.met_sla)
    )
    for group, severity, met_sla, count, returned in rows:
        values = figures[group]
        speed = "within_sla" if met_sla else "late"
        for bucket in (
            ("all",),
            ("severity", severity),
            ("speed", speed),
        ):
            totals = values.setdefault("returns", {}).setdefault(bucket, [0, 0])
            totals[0] += returned
            totals[1] += count


def _rate(totals: list[int] | None) -> ReturnRate:
    returned, eligible = totals or [0, 0]
    return ReturnRate(
        returned=returned,
        eligible=eligible,
        rate=round(returned / eligible, 4) if eligible else None,
    )


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, 3)


def _durations(values: dict[str, Any], kind: str) -> Durations:
    business = values.get(f"{kind}_business_s", (None, None))
    wall = values.get(f"{kind}_wall_s", (None, None))
    return Durations(
        count=values.get("closed", 0),
        median_business_hours=_hours(business[0]),
        p90_business_hours=_hours(business[1]),
        median_wall_hours=_hours(wall[0]),
        p90_wall_hours=_hours(wall[1]),
    )


def _group(key: str | None, values: dict[str, Any]) -> StatsGroup:
    closed = values.get("closed", 0)
    returns: dict[tuple[str, ...], list[int]] = values.get("returns", {})
    satisfaction = values.get("satisfaction")
    return StatsGroup(
        key=key,
        opened=sum(values.get("by_status", {}).values()),
        by_status=values.get("by_status", {}),
        closed=closed,
        respond=_durations(values, "respond"),
        resolve=_durations(values, "resolve"),
        sla_compliance=round(values["met"] / closed, 4) if closed else None,
        reopen_rate=round(values["reopened"] / closed, 4) if closed else None,
        mean_satisfaction=None if satisfaction is None else round(float(satisfaction), 2),
        return_rate=_rate(returns.get(("all",))),
        return_rate_by_severity={
            bucket[1]: _rate(totals)
            for bucket, totals in returns.items()
            if bucket[0] == "severity"
        },
        return_rate_by_speed={
            bucket[1]: _rate(totals) for bucket, totals in returns.items() if bucket[0] == "speed"
        },
    )
