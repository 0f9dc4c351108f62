"""Bulk writers' ids: time-ordered version 7 UUIDs, ascending within a batch and between
batches, all distinct (ordered keys keep a large import on the index's last pages)."""

from __future__ import annotations

import time

from shared.db import new_uuids


def test_new_uuids_are_version_7_ascending_and_distinct() -> None:
    first = new_uuids(5000)
    time.sleep(0.002)
    second = new_uuids(5000)
    assert {u.version for u in first + second} == {7}
    assert first == sorted(first)
    assert second == sorted(second)
    assert max(first) < min(second)
    assert len(set(first + second)) == 10000
    millis = first[0].int >> 80
    assert abs(millis - time.time_ns() // 1_000_000) < 60_000
