"""Keep full garbage collections out of experiment runs, and measure pauses.

A full collection in a PsychoPy process takes 135-225 ms and stops every
thread: a dozen dropped frames. Before a run we collect once and freeze what
survives (so later collections never scan PsychoPy's own long-lived objects),
and raise the oldest generation's threshold so no full pass starts on its own.
Young generations still collect (they are small and quick), so a run does not
grow without bound. After the run everything returns to normal and one full
collection happens between runs, where nobody is watching the screen.
"""

from __future__ import annotations

import gc
import time

NO_FULL_COLLECTION = 1_000_000


class GcGuard:
    """Context manager for one run; ``max_pause`` and ``collections`` are its record."""

    def __init__(self) -> None:
        self.max_pause = 0.0
        self.collections = 0
        self._started = 0.0
        self._thresholds = gc.get_threshold()

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.collections += 1
            if pause > self.max_pause:
                self.max_pause = pause

    def __enter__(self) -> "GcGuard":
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gen0, gen1, _ = self._thresholds
        gc.set_threshold(gen0, gen1, NO_FULL_COLLECTION)
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    @staticmethod
    def collect_between_runs() -> None:
        gc.collect()
