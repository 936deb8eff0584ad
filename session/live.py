"""Commands on the run in progress: pause, resume, stop, expInfo, data, annotations, trials.

Safe from any thread. Each checks what it can at once (raising :class:`Conflict`
when there is no run or the state forbids it), then hands a function to the
experiment's own thread, which applies it at its next frame between two flips
(:mod:`session.control`); the returned Future resolves with what it returned.
Between runs, expInfo changes and annotations apply to the session at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from . import control
from .errors import Conflict
from .events import (
    Annotated, DataAdded, ExpInfoChanged, RunPaused, RunResumed, RunStopping, TrialsChanged,
)
from .runs import PAUSED, RUNNING, STOPPING, ActiveRun, call_now, settled


class LiveControls:
    """The :class:`session.Session` methods that act on the running experiment.

    A mixin: it uses the session's ``_lock``, ``_status``, ``_active``,
    ``_current_ticket()``, ``_set_status()``, ``events`` and ``params``, and
    owns none of them.
    """

    # --- control (any thread) ----------------------------------------------------

    def _require_run(self, what: str) -> ActiveRun:
        active = self._active
        if active is None:
            raise Conflict(f"cannot {what}: no experiment is running")
        return active

    def _on_frame(self, active: ActiveRun, fn) -> Future:
        """Run ``fn(latency)`` on the experiment's thread at its next frame."""
        if threading.current_thread() is threading.main_thread():
            return call_now(fn, 0.0)
        return control.schedule(active.this_exp, fn)

    def pause(self) -> Future:
        """Pause the running experiment at its next frame; the future resolves when it has."""
        from psychopy.constants import PAUSED as PSYCHOPY_PAUSED

        with self._lock:
            active = self._require_run("pause")
            if self._status != RUNNING:
                raise Conflict(f"cannot pause: the session is {self._status}")

        def apply(latency: float) -> float:
            if active.ticket.stop_requested:
                raise Conflict("cannot pause: the run is stopping")
            if self._status == PAUSED:
                raise Conflict("the experiment is already paused")
            active.this_exp.status = PSYCHOPY_PAUSED
            self._set_status(PAUSED)
            self.events.publish(RunPaused(run_id=active.ticket.run_id, key=active.ticket.key, latency=latency))
            return latency

        return self._on_frame(active, apply)

    def resume(self) -> Future:
        """Resume a paused experiment at its next frame; the pause is not counted as a frame interval."""
        from psychopy.constants import STARTED

        with self._lock:
            active = self._require_run("resume")
            if self._status != PAUSED:
                raise Conflict(f"cannot resume: the session is {self._status}, not paused")

        def apply(latency: float) -> float:
            if active.ticket.stop_requested:
                raise Conflict("cannot resume: the run is stopping")
            if self._status != PAUSED:
                raise Conflict("the experiment is not paused")
            active.this_exp.status = STARTED
            if active.timing is not None:  # the pause is not a frame
                active.timing.skip_interval()
            self._set_status(RUNNING)
            self.events.publish(RunResumed(run_id=active.ticket.run_id, key=active.ticket.key, latency=latency))
            return latency

        return self._on_frame(active, apply)

    def stop(self, *, outcome: str = "stopped") -> Future:
        """Ask the run to end at its next frame (or not to start); its data are saved.

        ``outcome="aborted"`` records that the run was cut short by its host
        going away rather than by the experimenter.
        """
        from psychopy.constants import FINISHED

        if outcome not in ("stopped", "aborted"):
            raise ValueError("outcome must be 'stopped' or 'aborted'")
        with self._lock:
            ticket = self._current_ticket()
            if ticket is None:
                raise Conflict("cannot stop: no experiment is running")
            if ticket.stop_requested:
                raise Conflict("the run is already stopping")
            ticket.stop_requested = True
            ticket.stop_outcome = outcome
            active = self._active
            self._set_status(STOPPING)
            self.events.publish(RunStopping(run_id=ticket.run_id, key=ticket.key))
        if active is None:  # accepted but not started: it will end before running
            return settled(0.0)

        def apply(latency: float) -> float:
            active.this_exp.status = FINISHED
            return latency

        return self._on_frame(active, apply)

    # --- expInfo, data, annotations -------------------------------------------------

    def get_exp_info(self) -> dict[str, Any]:
        """The running run's expInfo, or (between runs) the session params for the next run."""
        active = self._active
        if active is not None:
            return dict(active.exp_info)
        return dict(self.params)

    def update_exp_info(self, values: dict[str, Any]) -> Future:
        """Change expInfo: live in the running experiment (next frame), else for future runs."""
        if not isinstance(values, dict):
            raise TypeError("exp_info values must be a dict")
        values = dict(values)
        active = self._active
        if active is None or active.this_exp is None:
            self.params.update(values)
            self.events.publish(ExpInfoChanged(run_id=None, exp_info=dict(self.params)))
            return settled(dict(self.params))

        def apply(latency: float) -> dict[str, Any]:
            active.exp_info.update(values)  # same dict as thisExp.extraInfo: later rows carry it
            snapshot = dict(active.exp_info)
            self.events.publish(ExpInfoChanged(run_id=active.ticket.run_id, exp_info=snapshot))
            return snapshot

        return self._on_frame(active, apply)

    def set_exp_info_item(self, name: str, value: Any) -> Future:
        """:meth:`update_exp_info` for one name (PsychoPy Session's ``setExpInfoItem``)."""
        return self.update_exp_info({name: value})

    def add_data(self, name: str, value: Any) -> Future:
        """Add a value to the current row of the running experiment's data."""
        if not isinstance(name, str) or not name:
            raise ValueError("data column name must be a non-empty string")
        active = self._require_run("add data")

        def apply(latency: float) -> bool:
            active.this_exp.addData(name, value)
            self.events.publish(DataAdded(run_id=active.ticket.run_id, name=name, value=value))
            return True

        return self._on_frame(active, apply)

    def annotate(self, text: str) -> Future:
        """Note ``text`` in the log and, during a run, in the current row's ``notes``."""
        from psychopy import logging

        text = str(text)
        active = self._active
        if active is None or active.this_exp is None:
            logging.exp(f"annotation: {text}")
            self.events.publish(Annotated(run_id=None, text=text))
            return settled(True)

        def apply(latency: float) -> bool:
            entry = active.this_exp.thisEntry
            previous = entry.get("notes")
            active.this_exp.addAnnotation(f"{previous} | {text}" if previous else text)
            logging.exp(f"annotation: {text}")
            self.events.publish(Annotated(run_id=active.ticket.run_id, text=text))
            return True

        return self._on_frame(active, apply)

    # --- trials --------------------------------------------------------------------

    @staticmethod
    def _trial_dict(trial) -> dict[str, Any] | None:
        if trial is None:
            return None
        if hasattr(trial, "getDict"):  # thisN, thisRepN, thisTrialN, thisIndex, data
            return dict(trial.getDict())  # PsychoPy's shape, "type" included
        return dict(trial) if isinstance(trial, dict) else {"value": repr(trial)}

    def current_trial(self) -> Future:
        """The current trial of the innermost loop, as PsychoPy's ``getDict()`` shape (None outside a loop)."""
        active = self._require_run("read trials")
        return self._on_frame(active, lambda _l: self._trial_dict(active.this_exp.getCurrentTrial()))

    def future_trials(self, n: int = 1, start: int = 0) -> Future:
        """The next ``n`` trials of the current loop after skipping ``start`` of them."""
        if n < 1 or start < 0:
            raise ValueError("n must be >= 1 and start >= 0")
        active = self._require_run("read trials")

        def read(_latency: float) -> list:
            # PsychoPy's getFutureTrials(start=0) wraps round to the last trial; slice instead.
            loop = active.this_exp.getCurrentLoop(isTrials=True)
            upcoming = list(getattr(loop, "upcomingTrials", None) or [])
            return [self._trial_dict(t) for t in upcoming[start:start + n]]

        return self._on_frame(active, read)

    def skip_trials(self, n: int = 1) -> Future:
        """Skip ``n`` trials of the current trials loop (``thisExp.skipTrials``); the trial landed on."""
        return self._move_trials("skip", n)

    def rewind_trials(self, n: int = 1) -> Future:
        """Go back ``n`` trials in the current trials loop (``thisExp.rewindTrials``); the trial landed on."""
        return self._move_trials("rewind", n)

    def _move_trials(self, action: str, n: int) -> Future:
        if not isinstance(n, int) or n < 1:
            raise ValueError("n must be a positive integer")
        active = self._require_run(f"{action} trials")

        def apply(latency: float):
            exp = active.this_exp
            loop = exp.getCurrentLoop(isTrials=True)
            from psychopy.data import TrialHandler2

            if not isinstance(loop, TrialHandler2):
                raise Conflict(f"cannot {action} trials: the experiment is not inside a trials loop")
            result = exp.skipTrials(n) if action == "skip" else exp.rewindTrials(n)
            self.events.publish(TrialsChanged(run_id=active.ticket.run_id, action=action, n=n))
            return self._trial_dict(result) if result is not None else None

        return self._on_frame(active, apply)
