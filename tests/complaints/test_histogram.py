"""Percentiles read from the duration buckets: always between the buckets of the two
durations around the rank, and within 2.5% of the exact ones when many are counted."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.histogram import bucket_bounds, bucket_of, percentile


def counts_of(durations: list[float]) -> dict[int, int]:
    found = Counter(bucket_of(d) for d in durations)
    return {bucket: n for bucket, n in found.items() if bucket is not None}


def test_buckets_hold_their_durations() -> None:
    for seconds in (0.0, 1.0, 59.0, 3600.0, 86_400.0 * 30, 86_400.0 * 365 * 3):
        low, high = bucket_bounds(bucket_of(seconds) or 0)
        assert low <= seconds < high or (seconds == 0 and low == 0)
    assert bucket_of(None) is None
    assert percentile({}, 0.5) is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=86_400 * 400), min_size=1, max_size=500),
    st.sampled_from([0.5, 0.9]),
)
def test_a_percentile_lies_in_the_buckets_around_its_rank(
    durations: list[float], share: float
) -> None:
    ordered = sorted(durations)
    rank = share * (len(ordered) - 1)
    below, above = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    approximate = percentile(counts_of(durations), share)
    assert approximate is not None
    low = bucket_bounds(bucket_of(below) or 0)[0]
    high = bucket_bounds(bucket_of(above) or 0)[1]
    assert low <= approximate <= high


def test_many_durations_give_percentiles_within_two_and_a_half_percent() -> None:
    rng = np.random.default_rng(11)
    for scale in (3_600.0, 86_400.0, 7 * 86_400.0):
        durations = list(rng.lognormal(mean=0.0, sigma=1.0, size=20_000) * scale)
        for share in (0.5, 0.9):
            exact = float(np.percentile(durations, share * 100))
            approximate = percentile(counts_of(durations), share)
            assert approximate is not None
            assert abs(approximate - exact) <= 0.025 * exact
