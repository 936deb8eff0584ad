"""Apply remote commands on the experiment's own thread, at its next frame.

Builder code reads ``thisExp.status`` at least once per frame (and every
millisecond while paused). We give the running ExperimentHandler a subclass
whose ``status`` getter first runs any commands queued by other threads, so
pause, stop, add_data and trial skips land on the main thread between frames,
never in the middle of one, with no polling of our own. The idle cost is one
truthiness test of a deque per status read.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from psychopy.data import ExperimentHandler


class ControlledExperimentHandler(ExperimentHandler):
    """An ExperimentHandler that drains a command queue whenever its status is read."""

    _ctl_pending: deque
    _ctl_frame_hook = None  # called at every status read (the GC guard's safety valve)

    @property
    def status(self):  # noqa: D401 - same contract as the base property
        """The handler's status, read after running the commands queued for it and the frame hook.

        Read on the experiment's thread (Builder reads it every frame), so commands run there.
        """
        if self._ctl_pending:
            self._ctl_drain()
        hook = self._ctl_frame_hook
        if hook is not None:
            hook()
        return self._status

    @status.setter
    def status(self, value):
        """Set the status exactly as the base class does (no commands run on writes)."""
        ExperimentHandler.status.fset(self, value)

    def _ctl_drain(self) -> None:
        pending = self._ctl_pending
        while pending:
            future, fn, queued_at = pending.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(time.perf_counter() - queued_at))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                future.set_exception(exc)


def adopt(this_exp: ExperimentHandler, frame_hook: Callable[[], None] | None = None) -> ControlledExperimentHandler:
    """Turn a Builder-made ExperimentHandler into a controlled one, in place."""
    this_exp._ctl_pending = deque()
    this_exp._ctl_frame_hook = frame_hook
    this_exp.__class__ = ControlledExperimentHandler
    return this_exp  # type: ignore[return-value]


def schedule(this_exp: ControlledExperimentHandler, fn: Callable[[float], Any]) -> Future:
    """Queue ``fn(latency_seconds)`` to run at the experiment's next status read."""
    future: Future = Future()
    this_exp._ctl_pending.append((future, fn, time.perf_counter()))
    return future


def cancel_pending(this_exp: ControlledExperimentHandler, exc: BaseException) -> None:
    """Fail commands that arrived too late for the run (it has ended)."""
    pending = getattr(this_exp, "_ctl_pending", None)
    while pending:
        future, _fn, _queued = pending.popleft()
        if future.set_running_or_notify_cancel():
            future.set_exception(exc)


def release(this_exp: ExperimentHandler) -> None:
    """Return a finished handler to the plain class so nothing more is drained."""
    if isinstance(this_exp, ControlledExperimentHandler):
        this_exp.__class__ = ExperimentHandler
