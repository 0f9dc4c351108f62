"""Durations as log-scale histogram buckets: each bucket is 5% wider than the one before,
so a percentile read from the counts of many durations is within about 2.5% of the exact
one (with few, it lies in the buckets around its rank), and a million complaints are
counted (one pass) rather than sorted (a sort per measure)."""

from __future__ import annotations

import math
from collections.abc import Mapping

# The durations kept at closure (seconds), each with its bucket column `<name>_bucket`.
DURATION_COLUMNS = ("respond_business_s", "respond_wall_s", "resolve_business_s", "resolve_wall_s")
RATIO = 1.05
UNIT_S = 60.0  # bucket 0 holds durations under about three seconds


def bucket_of(seconds: float | None) -> int | None:
    if seconds is None:
        return None
    return int(math.log1p(max(seconds, 0.0) / UNIT_S) / math.log(RATIO))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The durations (seconds) a bucket holds: [low, high)."""
    return UNIT_S * (RATIO**bucket - 1), UNIT_S * (RATIO ** (bucket + 1) - 1)


def percentile(counts: Mapping[int, int], share: float) -> float | None:
    """The `share` percentile (0-1) of the durations counted in `counts` (bucket -> count),
    interpolated within its bucket."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = share * (total - 1)
    seen = 0
    for bucket in sorted(counts):
        count = counts[bucket]
        if seen + count > rank:
            low, high = bucket_bounds(bucket)
            return low + (high - low) * min(1.0, (rank - seen + 0.5) / count)
        seen += count
    return bucket_bounds(max(counts))[1]
