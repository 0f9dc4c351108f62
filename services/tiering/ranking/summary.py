"""The tier summary: customers, revenue and collections per current tier, and the
80/20 figure.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import (
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.models import (
    epoch_day,
)
from services.tiering.ranking.figures import (
    AGGREGATES,
    NONE,
    SCORES,
    _code,
    _read_daily,
    _spread,
    _tiers_in_use,
)
from shared.columnar import (
    Col,
    Columns,
    fetch_columns,
    group_sum,
)
from shared.heavy import in_thread


async def summary_figures(
    session: AsyncSession, window_days: int, as_of: dt.datetime
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    """Per current tier: (customers, revenue, collected) over the window, in stored units,
    erased customers left out;
    the total revenue; and the revenue of the top 20% of customers by revenue."""
    end = epoch_day(as_of)
    names = sorted(await _tiers_in_use(session))
    customers = await fetch_columns(
        session,
        select(AGGREGATES.c.key).where(
            AGGREGATES.c.first_seen_at <= as_of, AGGREGATES.c.erased.is_(False)
        ),
        [Col("key", "int4", 0)],
    )
    tiers_now = await fetch_columns(
        session,
        select(SCORES.c.key, _code(SCORES.c.tier, names).label("tier")),
        [Col("key", "int4", 0), Col("tier", "int4", NONE)],
    )
    customers.update(_spread(customers["key"], tiers_now, {"tier": NONE}))
    daily = await _read_daily(
        session, customers["key"], ["collected", "revenue"], end - (window_days - 1), end
    )
    return await in_thread(_summarise, names, customers, daily)


def _summarise(
    names: list[str], customers: Columns, daily: Columns
) -> tuple[dict[str | None, tuple[int, int, int]], int, int]:
    count = len(customers["key"])
    revenue = group_sum(daily["at"], daily["revenue"], count)
    collected = group_sum(daily["at"], daily["collected"], count)
    codes, tier_of = np.unique(customers["tier"], return_inverse=True)
    tiers = {
        (names[code] if code >= 0 else None): (
            int(np.count_nonzero(tier_of == index)),
            int(revenue[tier_of == index].sum()),
            int(collected[tier_of == index].sum()),
        )
        for index, code in enumerate(codes.tolist())
    }
    top = np.sort(np.maximum(revenue, 0))[::-1][: -(-count // 5)]
    return tiers, int(revenue.sum()), int(top.sum())
