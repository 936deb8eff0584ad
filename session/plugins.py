"""Engine-side plugins: typed hooks on the experiment's own thread, budgeted.

A plugin that must be frame-exact (a marker stamped with the flip that showed
a routine's first frame) runs here, in the worker, on the experiment's thread.
Plugins are named by the server (``module:Class`` strings from its entry-point
registry, never by a client) and instantiated once per worker.

Where the events come from, at no cost to a run without plugins (nothing is
swapped in then):

- routine starts: Builder assigns ``thisExp.currentRoutine = routine`` at
  "--- Run Routine ---"; the handler gets a subclass whose setter notices it.
  The start is delivered right after the routine's first flip (``callOnFlip``),
  stamped with that flip's time. A routine ends when the next one is
  assigned, at ``thisExp.nextEntry()`` or at the run's end, stamped with its
  last flip (PsychoPy's own ``tStopRefresh``).
- trials: an iteration of the innermost running loop, seen at a routine
  start or at ``thisSession.sendExperimentData()`` (Builder calls it at the
  top of every iteration); it starts at its first flip and ends at
  ``nextEntry()`` with its last flip, carrying the data row's index.
- pause, resume, stop, annotations and added data: the session's own events,
  delivered on the experiment's thread when the command takes effect.
- every flip, only to plugins with ``wants_frames``: the window gets a
  subclass whose ``flip`` reports the time after PsychoPy's own.

Times are on PsychoPy's base clock (``psychopy.clock.getTime()``, the clock
under every ``core.Clock``); a plugin maps them to its own (LSL:
``pylsl.local_clock()``).

Every hook call is timed; one that takes longer than its plugin's ``budget``
is counted, and the run's :meth:`PluginHost.run_ended` record says so (it goes
into the manifest and the run's end event). A plugin that raises is reported
as a ``plugin_error`` event and never ends a run; after ``MAX_ERRORS`` in one
run it is not called again until the next run.
"""

from __future__ import annotations

import importlib
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .events import Annotated, DataAdded, Event, PluginError, RunPaused, RunResumed, RunStopping

MAX_ERRORS = 10  # errors of one plugin in one run before it is left alone for the rest of the run
DEFAULT_BUDGET = 0.0005  # seconds per hook call on the experiment's thread


# --- typed events the hooks receive ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunBegin:
    """A run is about to call the experiment's ``run()``; ``clock_zero``: base-clock time its globalClock read 0."""

    run_id: str
    key: str
    exp_info: dict[str, Any]
    data_dir: str
    manifest: dict[str, Any]
    time: float
    clock_zero: float


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A run ended; its data are saved. ``outcome``: completed, stopped, aborted or failed."""

    run_id: str
    key: str
    outcome: str
    rows: int
    duration: float
    error: str | None
    time: float


@dataclass(frozen=True, slots=True)
class RoutineBoundary:
    """A routine's first flip (start) or last flip (end); ``flipped`` False if it never drew a frame."""

    run_id: str
    routine: str
    time: float
    flipped: bool = True


@dataclass(frozen=True, slots=True)
class TrialBoundary:
    """An iteration ``n`` of ``loop``: its first flip, or its last flip when ``nextEntry`` closed data row ``row``."""

    run_id: str
    loop: str
    n: int
    row: int
    time: float
    flipped: bool = True


@dataclass(frozen=True, slots=True)
class ControlPoint:
    """Pause, resume or stop took effect on the experiment's thread at ``time`` (stop: ``outcome`` asked)."""

    run_id: str
    action: str
    time: float
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """An annotation (``run_id`` None between runs)."""

    run_id: str | None
    text: str
    time: float


@dataclass(frozen=True, slots=True)
class Value:
    """A value added to the running experiment's current row."""

    run_id: str
    name: str
    value: Any
    time: float


class EnginePlugin:
    """Base of engine-side plugins: override the hooks you need; each must return quickly.

    ``options`` are the ``NAME:options`` given to ``liaison serve --plugin``.
    Hooks run on the experiment's thread (``session_*`` on the worker's main
    thread, between runs). ``budget`` is the time one call may take before
    it is reported; ``wants_frames`` asks for :meth:`frame_flipped` at every
    flip of a run (costs one call per frame: keep it tiny).
    """

    budget: float = DEFAULT_BUDGET
    wants_frames: bool = False

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)

    def session_started(self, info: dict[str, Any]) -> None:
        """The worker's session is up (window open); ``info``: root, data_dir, window."""

    def session_stopping(self) -> None:
        """The worker is closing: release outlets, files, devices."""

    def run_started(self, run: RunBegin) -> None:
        """Before the experiment's ``run()``."""

    def run_ended(self, run: RunEnd) -> None:
        """After the run's data are saved."""

    def routine_started(self, event: RoutineBoundary) -> None:
        """Right after the routine's first flip."""

    def routine_ended(self, event: RoutineBoundary) -> None:
        """When the routine is over (its time: its last flip)."""

    def trial_started(self, event: TrialBoundary) -> None:
        """Right after the trial's first flip."""

    def trial_ended(self, event: TrialBoundary) -> None:
        """At ``nextEntry()`` (its time: the trial's last flip); a trial boundary, a good moment for upkeep."""

    def paused(self, event: ControlPoint) -> None:
        """The experiment observed the pause."""

    def resumed(self, event: ControlPoint) -> None:
        """The experiment observed the resume."""

    def stopping(self, event: ControlPoint) -> None:
        """A stop (or an abort) was applied; the run ends next."""

    def annotated(self, event: Note) -> None:
        """An annotation was added."""

    def data_added(self, event: Value) -> None:
        """A value was added to the current row."""

    def frame_flipped(self, time: float) -> None:
        """Every flip of a run (only with ``wants_frames``)."""


# --- budget accounting -----------------------------------------------------------------------

@dataclass
class HookBudget:
    """One plugin's hook calls in one run: how many, how long, how many over budget.

    Its :meth:`to_dict` is the plugin's entry in the run's ``plugins`` record
    (manifest and end event) — the section a per-run timing report includes.
    """

    budget: float
    calls: int = 0
    over_budget: int = 0
    total: float = 0.0
    max: float = 0.0
    slowest_hook: str | None = None
    errors: int = 0
    disabled: bool = False
    over_by_hook: dict[str, int] = field(default_factory=dict)

    def record(self, hook: str, seconds: float) -> None:
        """Count one hook call of ``seconds``: total, slowest, and whether it went over budget."""
        self.calls += 1
        self.total += seconds
        if seconds > self.max:
            self.max, self.slowest_hook = seconds, hook
        if seconds > self.budget:
            self.over_budget += 1
            self.over_by_hook[hook] = self.over_by_hook.get(hook, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        """The budget's accounting in milliseconds, for the run's manifest."""
        return {
            "budget_ms": self.budget * 1e3, "calls": self.calls, "over_budget": self.over_budget,
            "over_by_hook": dict(self.over_by_hook), "max_ms": round(self.max * 1e3, 4),
            "total_ms": round(self.total * 1e3, 4), "slowest_hook": self.slowest_hook,
            "errors": self.errors, "disabled": self.disabled,
        }


def import_object(path: str) -> Any:
    """``"package.module:Name"`` -> the object (paths come from the server's registry, never a client)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"plugin path {path!r} must look like 'package.module:ClassName'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


# --- the handler and window subclasses that see boundaries -------------------------------------

def _plugged_handler_class(host: "PluginHost") -> type:
    """A subclass of the controlled handler that also tells ``host`` about routines and rows.

    Made per host, with ``host`` in the class rather than on the instance:
    nothing is added to the handler, so Builder's ``saveAsPickle`` pickles
    exactly what it would without us. (Built lazily: importing this module
    must not import PsychoPy, the server imports it too.)
    """
    from .control import ControlledExperimentHandler

    class PluggedExperimentHandler(ControlledExperimentHandler):
        @property
        def currentRoutine(self):  # noqa: N802 - PsychoPy's name
            return self.__dict__.get("currentRoutine")

        @currentRoutine.setter
        def currentRoutine(self, routine):  # noqa: N802
            self.__dict__["currentRoutine"] = routine  # the same slot the plain class uses
            if routine is not None:
                host._routine_assigned(routine)

        def nextEntry(self):  # noqa: N802
            host._row_ending()
            return super().nextEntry()

    return PluggedExperimentHandler


def _frame_reporting_class(base: type, host: "PluginHost") -> type:
    """A subclass of the window's class whose ``flip`` also reports each flip to ``host``."""
    def flip(self, *args, **kwargs):
        result = base.flip(self, *args, **kwargs)
        host._frame()
        return result

    return type(f"FrameReporting{base.__name__}", (base,), {"flip": flip})


# --- the host -----------------------------------------------------------------------------------

@dataclass
class _RunState:
    run_id: str
    this_exp: Any
    win: Any
    window_class: type | None = None
    routine: str | None = None  # the routine in progress
    routine_flipped: bool = False
    trial: tuple | None = None  # (loop object, loop name, n, row) of the trial in progress
    trial_flipped: bool = False
    pending: list = field(default_factory=list)  # starts waiting for the next flip: (hook, make_event)
    armed: bool = False  # a callOnFlip is registered for the pending starts


class PluginHost:
    """Runs engine plugins' hooks on the experiment's thread, timed, their failures reported.

    With no plugins every method returns at once and nothing of the
    experiment or the window is changed.
    """

    def __init__(self, plugins: Sequence[tuple[str, EnginePlugin]] = (),
                 publish: Callable[[Event], Any] | None = None) -> None:
        self.plugins: list[tuple[str, EnginePlugin]] = list(plugins)
        self.publish = publish
        self.session = None
        self.budgets: dict[str, HookBudget] = {}
        self._run: _RunState | None = None
        self._frame_plugins = [(n, p) for n, p in self.plugins if p.wants_frames]
        self._handler_class: type | None = None  # made at the first run (imports PsychoPy)
        self._window_classes: dict[type, type] = {}
        self._reset_budgets()

    @classmethod
    def load(cls, specs: Sequence[tuple[str, str, dict[str, Any]]],
             publish: Callable[[Event], Any] | None = None) -> "PluginHost":
        """Instantiate ``(name, "module:Class", options)`` specs; one that fails is reported and left out."""
        plugins = []
        for name, path, options in specs:
            try:
                plugin_cls = import_object(path)
                plugins.append((name, plugin_cls(dict(options or {}))))
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not keep the worker from starting
                if publish is not None:
                    publish(PluginError(plugin=name, hook="load", where="engine", run_id=None,
                                        error=f"{type(exc).__name__}: {exc}", traceback=_short_tb()))
        return cls(plugins, publish)

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def attach(self, session) -> None:
        """Follow ``session``'s events (pause, resume, stop, annotations, added data)."""
        self.session = session
        if self.plugins:
            session.events.subscribe(self._on_session_event)

    def _reset_budgets(self) -> None:
        self.budgets = {name: HookBudget(budget=float(getattr(p, "budget", DEFAULT_BUDGET)))
                        for name, p in self.plugins}

    # calling hooks -------------------------------------------------------------------------
    def _call(self, hook: str, *args: Any) -> None:
        run = self._run
        for name, plugin in self.plugins:
            budget = self.budgets[name]
            if budget.disabled:
                continue
            started = time.perf_counter()
            try:
                getattr(plugin, hook)(*args)
            except Exception as exc:  # noqa: BLE001 - a plugin's failure never ends a run
                self._report(name, hook, exc, run.run_id if run else None, budget)
            budget.record(hook, time.perf_counter() - started)

    def _report(self, name: str, hook: str, exc: BaseException, run_id: str | None, budget: HookBudget) -> None:
        budget.errors += 1
        note = ""
        if self._run is not None and budget.errors >= MAX_ERRORS:
            budget.disabled = True
            note = f" (error {budget.errors} in this run: not called again until the next run)"
        if self.publish is not None:
            self.publish(PluginError(plugin=name, hook=hook, where="engine", run_id=run_id,
                                     error=f"{type(exc).__name__}: {exc}{note}", traceback=_short_tb()))

    # session -------------------------------------------------------------------------------
    def session_started(self, info: dict[str, Any]) -> None:
        """Tell plugins the session is up (its root, data folder, window)."""
        if self.plugins:
            self._call("session_started", info)

    def session_stopping(self) -> None:
        """Tell plugins the session is closing."""
        if self.plugins:
            self._call("session_stopping")

    # runs (main thread) ------------------------------------------------------------------------
    def run_started(self, *, run_id: str, key: str, exp_info: dict[str, Any], data_dir: str,
                    manifest: dict[str, Any], this_exp, win, global_clock) -> None:
        """Adopt the run's handler and window, then call ``run_started`` (just before ``run()``)."""
        if not self.plugins:
            return
        from psychopy import clock

        from .control import ControlledExperimentHandler

        self._reset_budgets()
        state = _RunState(run_id=run_id, this_exp=this_exp, win=win)
        if type(this_exp) is ControlledExperimentHandler:
            if self._handler_class is None:
                self._handler_class = _plugged_handler_class(self)
            this_exp.__class__ = self._handler_class
        if self._frame_plugins and win is not None:
            base = state.window_class = win.__class__
            if base not in self._window_classes:
                self._window_classes[base] = _frame_reporting_class(base, self)
            win.__class__ = self._window_classes[base]
        self._run = state
        self._call("run_started", RunBegin(
            run_id=run_id, key=key, exp_info=dict(exp_info), data_dir=str(data_dir), manifest=dict(manifest or {}),
            time=clock.getTime(), clock_zero=float(global_clock.getLastResetTime()),
        ))

    def run_ended(self, *, run_id: str, key: str, outcome: str, rows: int, duration: float,
                  error: str | None) -> dict[str, Any]:
        """Close open boundaries, call ``run_ended``, hand back the run's plugin record (``{}`` without plugins).

        The record is what the manifest and the end event carry as ``plugins``
        (and what a per-run timing report takes as its plugins section).
        """
        if not self.plugins:
            return {}
        from psychopy import clock

        state = self._run
        if state is None:  # stopped before it started: plugins never heard of it
            return {}
        self._close_routine(state)
        self._close_trial(state)
        self._flush_pending(state, clock.getTime(), flipped=False)
        self._release(state)
        self._call("run_ended", RunEnd(run_id=run_id, key=key, outcome=outcome, rows=rows, duration=duration,
                                       error=error, time=clock.getTime()))
        self._run = None
        report = {name: budget.to_dict() for name, budget in self.budgets.items()}
        self._reset_budgets()  # a plugin left alone for this run is called again from now on
        return report

    def _release(self, state: _RunState) -> None:
        if self._handler_class is not None and type(state.this_exp) is self._handler_class:
            state.this_exp.__class__ = self._handler_class.__mro__[1]  # not yet released: back to the controlled one
        if state.window_class is not None:
            state.win.__class__ = state.window_class

    # flips ------------------------------------------------------------------------------------
    def _last_flip(self, state: _RunState) -> float:
        """The most recent flip on the base clock (PsychoPy stamps flips on ``logging.defaultClock``)."""
        from psychopy import clock, logging

        frame_time = getattr(state.win, "_frameTime", None)
        if frame_time is None:
            return clock.getTime()
        return float(frame_time) + float(logging.defaultClock.getLastResetTime())

    def _arm(self, state: _RunState) -> None:
        if not state.armed and state.win is not None:
            state.armed = True
            state.win.callOnFlip(self._flipped, state)

    def _flipped(self, state: _RunState) -> None:
        """Right after a flip (``callOnFlip``): deliver the starts it showed."""
        state.armed = False
        if state is not self._run:  # a flip after its run ended (the rest screen)
            return
        self._flush_pending(state, self._last_flip(state), flipped=True)

    def _flush_pending(self, state: _RunState, at: float, flipped: bool) -> None:
        pending, state.pending = state.pending, []
        for hook, make in pending:
            self._call(hook, make(at, flipped))
        if flipped:
            state.routine_flipped = state.routine is not None
            state.trial_flipped = state.trial is not None

    def _frame(self) -> None:
        """Every flip, for ``wants_frames`` plugins."""
        state = self._run
        if state is None:
            return
        at = self._last_flip(state)
        for name, plugin in self._frame_plugins:
            budget = self.budgets[name]
            if budget.disabled:
                continue
            started = time.perf_counter()
            try:
                plugin.frame_flipped(at)
            except Exception as exc:  # noqa: BLE001
                self._report(name, "frame_flipped", exc, state.run_id, budget)
            budget.record("frame_flipped", time.perf_counter() - started)

    # boundaries (experiment's thread) ------------------------------------------------------------
    def _routine_assigned(self, routine) -> None:
        state = self._run
        if state is None:
            return
        self._close_routine(state)
        self._check_trial(state)
        name = str(getattr(routine, "name", None) or type(routine).__name__)
        state.routine, state.routine_flipped = name, False
        run_id = state.run_id
        state.pending.append(("routine_started", lambda at, flipped: RoutineBoundary(
            run_id=run_id, routine=name, time=at, flipped=flipped)))
        self._arm(state)

    def _close_routine(self, state: _RunState) -> None:
        if state.routine is None:
            return
        name, flipped = state.routine, state.routine_flipped
        state.routine = None
        if not flipped:  # it never drew a frame (skipped): its start and end are now
            from psychopy import clock

            self._flush_pending(state, clock.getTime(), flipped=False)
            at = clock.getTime()
        else:
            at = self._last_flip(state)
        self._call("routine_ended", RoutineBoundary(run_id=state.run_id, routine=name, time=at, flipped=flipped))

    def trial_boundary(self) -> None:
        """``sendExperimentData()`` was called (Builder: top of every loop iteration)."""
        state = self._run
        if state is not None and threading.current_thread() is threading.main_thread():
            self._check_trial(state)

    def _check_trial(self, state: _RunState) -> None:
        """Open a trial when the innermost running loop is on an iteration we have not seen."""
        loops = getattr(state.this_exp, "loopsUnfinished", None)
        if not loops:
            return
        loop = loops[-1]
        n = getattr(loop, "thisN", None)
        if not isinstance(n, int) or n < 0:
            return
        current = state.trial
        if current is not None and current[0] is loop and current[2] == n:
            return
        if current is not None:
            if state.trial_flipped:
                self._close_trial(state)
            else:  # an outer iteration with no frame of its own: the inner one is the trial
                state.pending = [p for p in state.pending if p[0] != "trial_started"]
        name = str(getattr(loop, "name", None) or "loop")
        row = len(getattr(state.this_exp, "entries", ()))
        state.trial, state.trial_flipped = (loop, name, n, row), False
        run_id = state.run_id
        state.pending.append(("trial_started", lambda at, flipped: TrialBoundary(
            run_id=run_id, loop=name, n=n, row=row, time=at, flipped=flipped)))
        self._arm(state)

    def _row_ending(self) -> None:
        state = self._run
        if state is None:
            return
        self._close_routine(state)
        self._close_trial(state)

    def _close_trial(self, state: _RunState) -> None:
        if state.trial is None:
            return
        _loop, name, n, row = state.trial
        flipped = state.trial_flipped
        state.trial = None
        if not flipped:
            from psychopy import clock

            self._flush_pending(state, clock.getTime(), flipped=False)
            at = clock.getTime()
        else:
            at = self._last_flip(state)
        self._call("trial_ended", TrialBoundary(run_id=state.run_id, loop=name, n=n, row=row, time=at,
                                                flipped=flipped))

    # the session's own events ----------------------------------------------------------------------
    def _on_session_event(self, event: Event) -> None:
        """Publisher sink: commands that took effect become hook calls on the experiment's thread.

        Never called inline: sinks run under the publisher's lock, which a
        hook's own ``plugin_error`` would need. During a run the call joins
        the experiment's command queue (drained at its next status read; the
        same drain when the command itself is being applied), else the main
        thread's task queue.
        """
        translated = self._translate(event)
        if translated is None:
            return
        state = self._run
        if state is not None and hasattr(state.this_exp, "_ctl_pending"):  # a controlled handler
            from .control import schedule

            schedule(state.this_exp, lambda _latency: self._deliver(translated))
        elif self.session is not None:
            self.session.queue.submit(self._deliver, translated)

    def _deliver(self, translated: tuple[str, Any]) -> None:
        hook, make = translated
        self._call(hook, make())

    def _translate(self, event: Event) -> tuple[str, Callable[[], Any]] | None:
        from psychopy import clock

        if isinstance(event, (RunPaused, RunResumed)):
            action = "pause" if isinstance(event, RunPaused) else "resume"
            return ("paused" if action == "pause" else "resumed",
                    lambda: ControlPoint(run_id=event.run_id, action=action, time=clock.getTime()))
        if isinstance(event, RunStopping):
            ticket = self.session._current_ticket() if self.session is not None else None
            outcome = ticket.stop_outcome if ticket is not None else "stopped"
            return ("stopping", lambda: ControlPoint(run_id=event.run_id, action="stop", time=clock.getTime(),
                                                     outcome=outcome))
        if isinstance(event, Annotated):
            return ("annotated", lambda: Note(run_id=event.run_id, text=event.text, time=clock.getTime()))
        if isinstance(event, DataAdded) and event.run_id is not None:
            return ("data_added", lambda: Value(run_id=event.run_id, name=event.name, value=event.value,
                                                time=clock.getTime()))
        return None


def _short_tb(limit: int = 4000) -> str:
    text = traceback.format_exc()
    return text[-limit:]
