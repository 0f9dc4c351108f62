"""A ranking's moves: how many customers went from each tier (or none) to each tier,
counted per pair as a count of the pairs one by one would."""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.tiering.ranking.store import count_moves

ORDER = ["A", "B", "C", "D"]
# Tiers in use: the policy's, then one an older policy gave (codes are positions here).
NAMES = [*ORDER, "Gold"]


def test_moves_are_counted_per_pair_of_tiers() -> None:
    rng = np.random.default_rng(3)
    before = rng.integers(-1, len(NAMES), 10_000)
    after = rng.integers(0, len(ORDER), 10_000)
    expected = Counter(
        (NAMES[b] if b >= 0 else None, ORDER[a])
        for b, a in zip(before.tolist(), after.tolist(), strict=True)
    )
    counted = count_moves(before, after, NAMES, ORDER)
    assert counted == dict(expected)
    assert ("Gold", "A") in counted and (None, "D") in counted


def test_a_few_moves_and_none() -> None:
    before = np.array([-1, -1, 0, 4, 4], dtype=np.int8)
    after = np.array([0, 0, 1, 3, 3], dtype=np.int8)
    assert count_moves(before, after, NAMES, ORDER) == {
        (None, "A"): 2,
        ("A", "B"): 1,
        ("Gold", "D"): 2,
    }
    empty = np.array([], dtype=np.int8)
    assert count_moves(empty, empty, NAMES, ORDER) == {}
