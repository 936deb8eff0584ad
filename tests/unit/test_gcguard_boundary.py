"""The GC guard's trial-boundary step costs the survivors since the last boundary, not the frozen heap.

No window: the guard is pure ``gc`` bookkeeping. ``gc.get_freeze_count()`` walks every
frozen object (18 ms for PsychoPy's heap), so a boundary must never call it; the count of
what a run froze must still be exact.
"""

from __future__ import annotations

import gc

from session.gcguard import GcGuard


def test_trial_boundary_counts_survivors_without_walking_the_frozen_heap(monkeypatch):
    ballast = [[i] for i in range(50_000)]  # long-lived objects, frozen when the run starts
    kept = []
    walks = []
    real_count = gc.get_freeze_count
    with GcGuard() as guard:
        frozen_at_start = real_count()
        monkeypatch.setattr(gc, "get_freeze_count", lambda: walks.append(1) or real_count())
        for boundary in range(3):
            kept += [[boundary, i] for i in range(5_000)]  # rows a run keeps: they survive
            guard._retire_middle()  # what at_trial_boundary does once the middle generation is due
        monkeypatch.undo()
        frozen_by_run = real_count() - frozen_at_start
    assert walks == [], "a trial boundary walked the whole frozen heap"
    assert frozen_by_run >= 15_000
    # Exact but for the few frozen objects refcounting has freed since (the spy, monkeypatch's records).
    assert frozen_by_run <= guard.frozen <= frozen_by_run + 20, "the run's frozen count is right"
    assert gc.get_freeze_count() == 0, "everything is collectable again after the run"
    del ballast, kept
