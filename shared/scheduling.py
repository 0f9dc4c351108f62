"""Work that falls due at moments kept in the database (SLA timers, outreach tasks): a
loop that sleeps until the earliest moment, looking again at least every `max_sleep_s`
(another replica may have set an earlier one), and backs off while passes fail."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from shared.db import utcnow

log = logging.getLogger("crm.scheduling")


async def run_when_due(
    name: str,
    work: Callable[[], Awaitable[int]],
    next_due: Callable[[], Awaitable[dt.datetime | None]],
    *,
    batch_size: int,
    max_sleep_s: float,
) -> None:
    """Run `work` (one pass; it returns how many items it took) until cancelled: at once
    again while passes come back full, else when the next item is due."""
    backoff = max_sleep_s
    while True:
        try:
            if await work() >= batch_size:
                continue
            upcoming = await next_due()
            delay = max_sleep_s
            if upcoming is not None:
                delay = min(delay, max((upcoming - utcnow()).total_seconds(), 0.0))
            backoff = max_sleep_s
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: a pass failed; trying again in %.1f s", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
