"""Keep garbage-collection pauses out of an experiment's frames, and measure them.

A full collection in a PsychoPy process takes 135-225 ms and stops every
thread: a dozen dropped frames. Even a middle-generation collection takes
1-10 ms in a long trials loop. So during a run:

- before it, one full collection, then ``gc.freeze()`` of what survives, so no
  later collection scans PsychoPy's own long-lived objects;
- during frames, only the youngest generation collects automatically (a few
  hundred new objects: tens of microseconds);
- at trial boundaries, when the Builder loop calls
  ``thisSession.sendExperimentData()`` and nobody is watching a stimulus,
  the youngest generation is collected (a few hundred objects) and whatever
  survives it is frozen (``gc.freeze()``: a list splice, O(1)) instead of
  being scanned again by a middle-generation collection: those took 1-11 ms
  in long trials loops, where every row a run keeps is a survivor. The
  survivors are counted from the middle generation's list before the
  freeze, never with ``gc.get_freeze_count()``: that walks every frozen
  object (18 ms for PsychoPy's 160,000) and cost a quarter of the worker's
  time at a thousand trials a second. Cyclic
  garbage that outlived one young collection is then kept until the run
  ends; so that this stays bounded, once a run has frozen ``FREEZE_BUDGET``
  objects the boundaries fall back to collecting the middle generation;
- if a script never reaches a trial boundary, the same happens after
  ``MAX_DEFERRED`` young collections, from a frame (the safety valve), so
  memory stays bounded;
- the oldest generation never during a run; one full collection after it.

``max_pause`` is the longest collection that interrupted frames (automatic
ones); ``max_boundary_pause`` the longest scheduled one between trials;
``frozen`` how many objects the run froze instead of scanning them.
"""

from __future__ import annotations

import gc
import threading
import time

NEVER = 1_000_000_000  # a generation threshold that is never reached
SLOW = 1e-3  # a collection longer than this (s) is counted as slow in the timing report
MAX_DEFERRED = 100  # young collections before the middle one runs without waiting for a trial boundary
FREEZE_BUDGET = 1_000_000  # objects a run may freeze at trial boundaries (~100 MB at most) before collecting


class GcGuard:
    """Context manager for one run; see the module docstring."""

    def __init__(self) -> None:
        self.max_pause = 0.0
        self.max_boundary_pause = 0.0
        self.collections = 0
        self.slow_in_frames = 0  # automatic collections over SLOW seconds (they interrupted a frame)
        self.slow_at_boundaries = 0
        self._started = 0.0
        self._scheduled = False
        self._active = False
        self._overdue = False  # set by a young collection once the middle one is far overdue
        self._thresholds = gc.get_threshold()
        self._middle_every = max(1, self._thresholds[1])
        self.frozen = 0
        self.worst_in_frames: dict | None = None  # the longest automatic collection: generation, thread, objects

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.collections += 1
        if self._scheduled:
            self.max_boundary_pause = max(self.max_boundary_pause, pause)
            self.slow_at_boundaries += pause > SLOW
        else:
            if pause > self.max_pause:  # which thread's allocation set it off, to tell whom to blame
                self.max_pause = pause
                self.worst_in_frames = {"ms": round(pause * 1e3, 4), "generation": info.get("generation"),
                                        "thread": threading.current_thread().name,
                                        "collected": info.get("collected")}
            self.slow_in_frames += pause > SLOW
            if gc.get_count()[1] >= MAX_DEFERRED:
                self._overdue = True

    def __enter__(self) -> "GcGuard":
        gc.collect()
        gc.freeze()
        self.frozen = 0
        self._thresholds = gc.get_threshold()
        self._middle_every = max(1, self._thresholds[1])
        gc.set_threshold(self._thresholds[0], NEVER, NEVER)
        gc.callbacks.append(self._callback)
        self._active = True
        return self

    def __exit__(self, *exc_info) -> None:
        self._active = False
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def at_trial_boundary(self) -> None:
        """Retire the middle generation if it is due (experiment's thread, between trials)."""
        if self._active and gc.get_count()[1] >= self._middle_every:
            self._retire_middle()

    def at_frame(self) -> None:
        """Safety valve for scripts with no trial boundaries (every status read: one attribute test)."""
        if self._overdue and self._active:
            self._retire_middle()

    def _retire_middle(self) -> None:
        """Freeze what survives a young collection; past the budget, collect the middle generation.

        Costs a young collection plus a walk of the middle generation (the
        survivors since the last boundary), never of what is already frozen.
        """
        self._overdue = False
        self._scheduled = True
        try:
            if self.frozen < FREEZE_BUDGET:
                gc.collect(0)
                # After a young collection everything unfrozen is in the middle and oldest generations
                # (the oldest one only holds what a past-budget collect(1) promoted, and then we never get here).
                survivors = len(gc.get_objects(1)) + len(gc.get_objects(2))
                gc.freeze()
                self.frozen += survivors
            else:
                gc.collect(1)
        finally:
            self._scheduled = False

    def describe(self) -> dict:
        """The run's collections for its timing report (milliseconds)."""
        return {"collections": self.collections, "max_in_frames_ms": round(self.max_pause * 1e3, 4),
                "max_at_boundaries_ms": round(self.max_boundary_pause * 1e3, 4),
                "slow_in_frames": self.slow_in_frames, "slow_at_boundaries": self.slow_at_boundaries,
                "slow_ms": SLOW * 1e3, "frozen": self.frozen, "worst_in_frames": self.worst_in_frames}

    @staticmethod
    def collect_between_runs() -> None:
        """One full collection, for after a run (never during one: it stops every thread for 100+ ms)."""
        gc.collect()
