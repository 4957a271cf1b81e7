"""A service process's garbage collector (shared.service.tune_gc, M1_GC_THRESHOLD)."""

from __future__ import annotations

import gc

import pytest

from shared.service import tune_gc
from shared.settings import Settings


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_service_process_freezes_what_it_loaded_and_collects_less_often(restored_gc, monkeypatch):
    monkeypatch.setenv("M1_GC_THRESHOLD", "20000")
    _, older, oldest = gc.get_threshold()
    loaded = [object() for _ in range(1000)]  # alive at start: frozen, never traversed again
    tune_gc(Settings().gc_threshold)
    assert gc.get_threshold() == (20000, older, oldest)
    assert gc.get_freeze_count() >= len(loaded)


def test_the_threshold_is_never_below_pythons_default():
    with pytest.raises(ValueError):
        Settings(gc_threshold=100)
