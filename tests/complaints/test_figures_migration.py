"""Revision 0004 gives the complaints that exist the figures the statistics scan."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, text, true

from services.complaints.models import ComplaintFigures
from services.complaints.repository import Tally, figures_of, tally_of
from shared.db import create_engine, migrate
from tests.conftest import DatabaseFactory, migrations_dir


async def test_existing_complaints_get_their_figures(new_database: DatabaseFactory) -> None:
    url = await new_database("complaints", "0003_duration_buckets")
    engine = create_engine(url)
    opened = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    sqlite = "sqlite" in url
    async with engine.begin() as conn:
        for status, severity, closed in (("confirmed", "major", True), ("judged", "minor", False)):
            ident = uuid.uuid4()
            await conn.execute(
                text(
                    "INSERT INTO complaints (id, customer_id, channel, severity, status, owner, "
                    "received_by, escalation_level, reopen_count, opened_at, updated_at, "
                    "closed_at, version, respond_breached, resolve_breached, alerts_done, "
                    "satisfaction, met_sla, resolve_wall_bucket) VALUES (:id, :customer, "
                    "'phone', :severity, :status, 'ann', 'ann', 0, 1, :opened, :opened, "
                    ":closed, 1, false, false, '[]', :satisfaction, :met, :bucket)"
                ),
                {
                    "id": ident.hex if sqlite else ident,
                    "customer": uuid.uuid4().hex if sqlite else uuid.uuid4(),
                    "severity": severity,
                    "status": status,
                    "opened": opened,
                    "closed": opened + dt.timedelta(hours=5) if closed else None,
                    "satisfaction": 4 if closed else None,
                    "met": True if closed else None,
                    "bucket": 70 if closed else None,
                },
            )
    await engine.dispose()
    await migrate(url, migrations_dir("complaints"))
    engine = create_engine(url)
    async with engine.connect() as conn:
        kept = sorted((await conn.execute(select(ComplaintFigures.__table__))).all())
        again = sorted((await conn.execute(figures_of(true()))).all())
    await engine.dispose()
    assert len(kept) == 2 and kept == again
    closed_row = next(row for row in kept if row.closed_at is not None)
    assert tally_of(closed_row.tally) == Tally("confirmed", "major", True, True, False)
    assert closed_row.resolve_wall_bucket == 70
