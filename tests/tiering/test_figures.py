"""`Figures`: each sum and each set of purchase days is computed once, also when the
ranking asks for it from two threads at once (`score_everyone` scores beside ranking)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from services.tiering.ranking import compute, figures
from services.tiering.ranking.figures import Figures
from services.tiering.schemas import DEFAULT_POLICY

END = 20_000


def _figures() -> Figures:
    """Three customers; the second bought twice (one day in the year, one before it)."""
    return Figures(
        policy=DEFAULT_POLICY,
        end=END,
        customers={"key": np.array([1, 2, 3]), "level": np.array([-1, -1, -1])},
        tier_names=DEFAULT_POLICY.tier_order(),
        daily={
            "at": np.array([0, 1, 1]),
            "day": np.array([END, END - 10, END - 400]),
            "purchases": np.array([1, 1, 2]),
            "revenue": np.array([500, 300, 7_000]),
            "collected": np.array([500, 300, 7_000]),
        },
        touches={
            "last_touch": np.array([-1, END - 5, -1]),
            "touches": np.array([0, 1, 0]),
            "satisfaction_sum": np.array([0, 5, 0]),
            "satisfaction_count": np.array([0, 1, 0]),
        },
        complaints={
            "open_complaints": np.array([0, 0, 1]),
            "recent_complaints": np.array([0, 0, 1]),
        },
    )


def test_a_sum_asked_for_by_two_threads_at_once_is_computed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = figures.group_sum

    def slow_sum(*args: Any) -> Any:
        calls.append(1)
        time.sleep(0.2)  # long enough for the second thread to ask meanwhile
        return original(*args)

    monkeypatch.setattr(figures, "group_sum", slow_sum)
    found = _figures()
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(found.window_sum("revenue", 365)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert [list(result) for result in results] == [[500, 300, 0]] * 2
    assert list(found.window_sum("revenue", 730)) == [500, 7_300, 0]  # another window
    assert len(calls) == 2


def test_purchase_days_are_computed_once_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _figures()
    calls: list[int | None] = []
    original = found._purchase_days
    monkeypatch.setattr(found, "_purchase_days", lambda days: calls.append(days) or original(days))
    first, last, counted = found.purchase_days()
    assert (list(first), list(last), list(counted)) == (
        [END, END - 400, -1],
        [END, END - 10, -1],
        [1, 2, 0],
    )
    assert found.purchase_days()[1] is last
    first, _, counted = found.purchase_days(30)
    assert (list(first), list(counted)) == ([END, END - 10, -1], [1, 1, 0])
    assert calls == [None, 30]


def test_scoring_beside_ranking_gives_what_one_thread_gives() -> None:
    together = compute.score_everyone(_figures())
    alone = _figures()
    bands = compute.share_bands(alone)
    scores = {**compute.customer_scores(alone), **compute._rfm_scores(alone)}
    assert list(together.bands.band) == list(bands.band)
    assert together.scores.keys() == scores.keys()
    for name, values in scores.items():
        np.testing.assert_array_equal(together.scores[name], values)
