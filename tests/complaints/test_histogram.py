"""Percentiles read from the duration buckets are within 2.5% of the exact ones."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.histogram import bucket_bounds, bucket_of, percentile


def test_buckets_hold_their_durations() -> None:
    for seconds in (0.0, 1.0, 59.0, 3600.0, 86_400.0 * 30, 86_400.0 * 365 * 3):
        low, high = bucket_bounds(bucket_of(seconds) or 0)
        assert low <= seconds < high or (seconds == 0 and low == 0)
    assert bucket_of(None) is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=120, max_value=86_400 * 400), min_size=50, max_size=2000),
    st.sampled_from([0.5, 0.9]),
)
def test_percentiles_from_buckets_are_close(durations: list[float], share: float) -> None:
    counts = Counter(bucket_of(d) for d in durations)
    approximate = percentile({k: v for k, v in counts.items() if k is not None}, share)
    exact = float(np.percentile(durations, share * 100))
    assert approximate is not None
    # Within the bucket's width of the exact value: 5% wide, so 2.5% each side on average,
    # and never more than one bucket away.
    assert abs(approximate - exact) <= 0.05 * exact + 60 * 0.05
