"""A service process collects garbage every CRM_GC_THRESHOLD allocations, with what it
imported at start frozen out of the collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.tiering.settings import TieringSettings
from shared.app import tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_threshold_is_raised_and_startup_objects_frozen(
    restored_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DEV_MODE", "true")
    monkeypatch.setenv("CRM_GC_THRESHOLD", "12345")
    older = gc.get_threshold()[1:]
    frozen = gc.get_freeze_count()
    tune_garbage_collector(TieringSettings())
    assert gc.get_threshold() == (12345, *older)
    assert gc.get_freeze_count() > frozen


def test_zero_keeps_pythons_collector(
    restored_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_DEV_MODE", "true")
    monkeypatch.setenv("CRM_GC_THRESHOLD", "0")
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_garbage_collector(TieringSettings())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
