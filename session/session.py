"""The Session: runs PsychoPy experiments one after another in one window.

Threading contract: :meth:`Session.run`, :meth:`Session.setup_window` and
:meth:`Session.serve_forever` belong to the main thread (the window's
thread). Every other public method is safe from any thread; commands that
touch a running experiment are applied by the experiment's own thread at its
next frame (see :mod:`session.control`) and return a Future.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import secrets
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import clock as session_clock
from . import control, priority, records, simulate
from .builder_shim import BuilderSessionShim
from .capture import CapturedOutput
from .errors import Busy, Conflict, NotFound, WrongThread
from .events import (
    Annotated, DataAdded, DataRows, ExperimentAdded, ExpInfoChanged, Publisher, RunFailed,
    RunFinished, RunPaused, RunResumed, RunStarted, RunStopping, RunTiming, StatusChanged, TrialsChanged,
)
from .experiments import (
    Experiment, defaults_from_module, discover, load_module, make_experiment, module_name,
)
from .gcguard import GcGuard
from .isolation import exit_outcome, experiment_scope
from .mainloop import MainThreadQueue
from .plugins import PluginHost
from .rescan import find_new
from .clock import check_clock
from .names import contain_data_file
from .devices import SessionDevices, psychopy_device_errors, require_between_runs, session_device_names
from .problems import ExperimentProblems, ProblemChecks
from .timing import TimingRecorder
from .window import WindowHost, WindowParams

IDLE, STARTING, RUNNING, PAUSED, STOPPING = "idle", "starting", "running", "paused", "stopping"


@dataclass
class RunTicket:
    """A run that has been accepted and waits for the main thread."""

    run_id: str
    key: str
    exp_info: dict[str, Any]
    seed: int | None
    simulate: "simulate.Policy | None" = None  # a dry run: the simulated participant answers
    manifest_extra: dict[str, Any] = field(default_factory=dict)  # e.g. which plan step this run is
    stop_requested: bool = False
    stop_outcome: str = "stopped"  # "aborted" when the supervisor is gone


@dataclass
class ActiveRun:
    """What the session knows about the run in progress."""

    ticket: RunTicket
    data_dir: Path
    exp_info: dict[str, Any]
    this_exp: Any = None
    guard: Any = None  # the run's GcGuard: middle-generation collections at trial boundaries
    timing: TimingRecorder | None = None  # the run's frame timing (session.timing)
    published_rows: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class RunResult:
    run_id: str
    key: str
    outcome: str  # completed | stopped | failed
    data_dir: Path
    data_files: list[str]
    rows: int
    exp_info: dict[str, Any]
    seed: int
    duration: float
    gc_max_pause: float
    gc_max_boundary_pause: float = 0.0
    error: str | None = None
    traceback: str | None = None
    plugins: dict[str, Any] = field(default_factory=dict)  # engine plugins' hook accounting (session.plugins)
    timing: dict[str, Any] | None = None  # session.timing report


def new_run_id(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in key)[:40]
    return f"{datetime.now():%Y%m%dT%H%M%S}-{safe}-{secrets.token_hex(3)}"


def plain_rows(rows: list[dict]) -> list[dict]:
    """Shallow copies: PsychoPy may still write to a row dict after we publish it."""
    return [dict(row) for row in rows]


class Session:
    """Host for PsychoPy experiments found under ``root``; see module docstring."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        data_dir: str | os.PathLike | None = None,
        window: WindowParams | dict | None = None,
        params: dict[str, Any] | None = None,
        rest_message: str = "Please wait for the experimenter",
        publisher: Publisher | None = None,
        discover_experiments: bool = True,
        open_window: bool = True,
        capture_output: bool = False,
        plugins: PluginHost | None = None,
        clock: str = "float",
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotFound(f"session root {self.root} is not a folder")
        self.data_dir = Path(data_dir).resolve() if data_dir else self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = self.data_dir / ".compiled"
        self.events = publisher or Publisher()
        self.plugins = plugins if plugins is not None else PluginHost()
        self.plugins.attach(self)
        self.queue = MainThreadQueue()
        self.params: dict[str, Any] = dict(params or {})
        self.capture_output = capture_output  # runs' fd 1/2 to their folder (worker processes)
        self.clock_format = check_clock(clock)  # float | iso | strftime, as psychopy.session.Session(clock=)
        if isinstance(window, dict):
            window = WindowParams.from_dict(window)
        self.windows = WindowHost(window, rest_message)
        self.experiments: dict[str, Experiment] = {}
        self.runs: list[RunResult] = []
        self._lock = threading.RLock()
        self._status = IDLE
        self._ticket: RunTicket | None = None
        self._active: ActiveRun | None = None
        self._shim = BuilderSessionShim(self)
        self.checks = ProblemChecks()  # what would make each experiment fail (session/problems.py)
        self._started_at = time.monotonic()
        self._log_file = None
        self._open_log()
        if discover_experiments:
            for experiment in discover(self.root):
                self._register(experiment)
        if open_window:
            self.setup_window()
        self.plugins.session_started({"root": str(self.root), "data_dir": str(self.data_dir),
                                      "window": self.windows.describe()})
        self.devices = SessionDevices(self.data_dir, self.events.publish, self.time, self._current_run_id)
        self._restore_devices()

    # --- lifecycle -----------------------------------------------------------

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop any run, close the window and flush logs (main thread)."""
        if self._current_ticket() is not None:
            try:
                self.stop()
            except Conflict:
                pass
        self.plugins.session_stopping()
        self.windows.close()
        if self._log_file is not None:
            from psychopy import logging

            logging.flush()
            logging.root.removeTarget(self._log_file)
            self._log_file = None

    def _open_log(self) -> None:
        from psychopy import logging

        self._log_file = logging.LogFile(str(self.data_dir / "session.log"), level=logging.INFO, filemode="a")

    def time(self) -> float:
        """Seconds since the session started (the session clock)."""
        return time.monotonic() - self._started_at

    # --- status ----------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status

    def _current_ticket(self) -> RunTicket | None:
        active = self._active
        return active.ticket if active is not None else self._ticket

    def _set_status(self, status: str) -> None:
        self._status = status
        ticket = self._current_ticket()
        self.events.publish(StatusChanged(
            status=status,
            run_id=ticket.run_id if ticket and status != IDLE else None,
            key=ticket.key if ticket and status != IDLE else None,
        ))

    def state(self) -> dict[str, Any]:
        """A snapshot for clients that just connected."""
        with self._lock:
            active = self._active
            return {
                "status": self._status,
                "run_id": active.ticket.run_id if active else (self._ticket.run_id if self._ticket else None),
                "key": active.ticket.key if active else (self._ticket.key if self._ticket else None),
                "exp_info": dict(active.exp_info) if active else dict(self.params),
                "rows": active.published_rows if active else 0,
                "experiments": self.list_experiments(),
                "window": self.windows.describe(),
                "session_time": self.time(),
                "last_seq": self.events.last_seq,
                "runs": [self._describe_result(r) for r in self.runs[-50:]],
            }

    # --- experiments -------------------------------------------------------------

    def _register(self, experiment: Experiment) -> None:
        self.experiments[experiment.key] = experiment
        self.events.publish(ExperimentAdded(
            key=experiment.key, path=experiment.path.relative_to(self.root).as_posix(),
            kind=experiment.kind, exp_info=dict(experiment.exp_info),
        ))

    def list_experiments(self) -> list[dict[str, Any]]:
        return [{**e.describe(self.root), **self.readiness(e)} for e in list(self.experiments.values())]

    def readiness(self, experiment: Experiment, *, inspect_now: bool = False) -> dict[str, Any]:
        """``problems`` (None until inspected) and the ``devices`` it names, with those missing."""
        inspection = self.checks.check(experiment) if inspect_now else self.checks.cached(experiment)
        devices = session_device_names()
        required = inspection.required_devices if inspection else []
        return {"problems": self.checks.problems(inspection, devices),
                "devices": {"required": list(required), "missing": [d for d in required if d not in devices]}}

    def add_experiment(self, path: str | os.PathLike, key: str | None = None, *, load: bool = True) -> dict[str, Any]:
        """Register an experiment file under ``root``; with ``load``, compile and import it now.

        Loading imports Builder code, so call it on the main thread (the
        worker queues it there) while no run is in progress.
        """
        experiment = make_experiment(self.root, path, key)
        existing = self.experiments.get(experiment.key)
        if existing is not None and existing.path != experiment.path:
            raise Conflict(f"key {experiment.key!r} is already used by {existing.path.relative_to(self.root)}")
        if load:
            module = load_module(experiment, self.cache_dir, self.root)
            experiment.exp_info = defaults_from_module(module)
        self._register(experiment)
        return experiment.describe(self.root)

    def rescan(self) -> dict[str, Any]:
        """Register experiments that appeared under ``root`` since it was searched (none is imported).

        Each new one is announced with an ``experiment_added`` event; known keys never change.
        """
        with self._lock:
            added = find_new(self.root, self.experiments)
            for experiment in added:
                self._register(experiment)
            return {"added": [e.describe(self.root) for e in added], "experiments": len(self.experiments)}

    def experiment(self, key: str) -> Experiment:
        try:
            return self.experiments[key]
        except KeyError:
            known = ", ".join(sorted(self.experiments)) or "none"
            raise NotFound(f"no experiment with key {key!r} (known: {known})") from None

    def exp_info_defaults(self, key: str) -> dict[str, Any]:
        """The expInfo a run of ``key`` starts from: experiment defaults, then session params."""
        experiment = self.experiment(key)
        defaults = defaults_from_module(experiment.module) if experiment.module else dict(experiment.exp_info)
        for name in defaults:
            if name in self.params:
                defaults[name] = self.params[name]
        return defaults

    # --- devices (session/devices.py) ----------------------------------------------

    def _current_run_id(self) -> str | None:
        ticket = self._current_ticket()
        return ticket.run_id if ticket else None

    def _restore_devices(self) -> None:
        from psychopy import logging

        for name, error in self.devices.restore(setup_from=self._setup_devices_now).items():
            logging.warning(f"liaison: device {name!r} could not be re-created: {error}")

    def _between_runs(self, what: str, fn, *args: Any) -> Future:
        """Run ``fn`` on the main thread while no run is in progress (devices touch the window's thread)."""
        require_between_runs(self._current_ticket() is not None, what)
        if threading.current_thread() is threading.main_thread():
            done: Future = Future()
            try:
                done.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001
                done.set_exception(exc)
            return done
        return self.queue.submit(fn, *args)

    def list_devices(self) -> list[dict[str, Any]]:
        """The session's devices: name, class, params (or the experiment that set it up), ready, error."""
        return self.devices.describe()

    def add_device(self, name: str, device_class: str, params: dict[str, Any] | None = None) -> Future:
        return self._between_runs("add a device", self.devices.add, name, device_class, params or {})

    def remove_device(self, name: str) -> Future:
        return self._between_runs("remove a device", self.devices.remove, name)

    def list_available_devices(self, device_class: str | None = None) -> Future:
        return self._between_runs("list available devices", self.devices.available, device_class)

    def setup_devices(self, key: str) -> Future:
        """Run experiment ``key``'s setupDevices once; its devices become session devices."""
        self.experiment(key)
        return self._between_runs("set up devices", self._setup_devices_now, key)

    def _setup_devices_now(self, key: str) -> list[str]:
        experiment = self.experiment(key)
        with self._experiment_scope(key):
            module = load_module(experiment, self.cache_dir, self.root)
            return self.devices.setup_from_experiment(key, module, self.windows.win, self.data_dir / ".setup")

    # --- window ----------------------------------------------------------------

    def _require_main(self, what: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise WrongThread(f"{what} must be called on the main thread (use session.queue)")

    def setup_window(self, params: WindowParams | dict | None = None) -> dict[str, Any]:
        """Open the window or change its parameters (main thread, between runs)."""
        self._require_main("setup_window")
        if self._active is not None:
            raise Busy("cannot change the window while an experiment runs")
        if isinstance(params, dict):
            params = self.windows.params.updated(params)
        self.windows.ensure(params)
        self.windows.show_rest()
        return self.windows.describe()

    def check_timing(self, frames: int = 300) -> dict[str, Any]:
        """A short built-in flip test in the session window: refresh rate, jitter, drops (main thread, idle)."""
        from .timing import flip_test

        self._require_main("check_timing")
        if self._active is not None or self._ticket is not None:
            raise Busy("cannot check timing while an experiment runs")
        report = flip_test(self.windows.ensure(), int(frames), self.windows.measured_rate)
        report["priority"] = priority.report()
        self.windows.show_rest()
        return report

    # --- running ------------------------------------------------------------------

    def prepare_run(self, key: str, exp_info: dict[str, Any] | None = None, *,
                    seed: int | None = None, run_id: str | None = None,
                    simulate: dict[str, Any] | None = None,
                    manifest_extra: dict[str, Any] | None = None) -> RunTicket:
        """Accept a run (any thread): checks the key, the experiment's problems and that nothing else runs.

        ``simulate`` (a :class:`session.simulate.Policy` as a dict; ``{}`` for
        its defaults) makes it a dry run; ``manifest_extra`` is merged into
        the run's manifest.
        """
        experiment = self.experiment(key)
        if self._ticket is None and self._active is None:  # inspecting compiles: never beside a run
            problems = self.readiness(experiment, inspect_now=True)["problems"]
            if ProblemChecks.blocking(problems):
                raise ExperimentProblems(key, problems)
        if exp_info is not None and not isinstance(exp_info, dict):
            raise TypeError("exp_info must be a dict")
        policy = _policy(simulate)
        with self._lock:
            if self._ticket is not None or self._active is not None:
                current = (self._active.ticket if self._active else self._ticket)
                raise Busy(f"run {current.run_id} ({current.key}) is in progress")
            self._ticket = RunTicket(run_id or new_run_id(key), key, dict(exp_info or {}), seed, policy,
                                     dict(manifest_extra or {}))
            self._set_status(STARTING)
            return self._ticket

    def run(self, key: str, exp_info: dict[str, Any] | None = None, *, seed: int | None = None,
            simulate: dict[str, Any] | None = None) -> RunResult:
        """Run an experiment to its end on this (main) thread and return what happened."""
        return self.execute(self.prepare_run(key, exp_info, seed=seed, simulate=simulate))

    def execute(self, ticket: RunTicket) -> RunResult:
        """Run an accepted ticket (main thread). Failures become a ``failed`` result, not an exception."""
        self._require_main("run")
        if self._ticket is not ticket:
            raise Conflict("this run ticket is not the pending one")
        data_dir = self.data_dir / "runs" / ticket.run_id
        data_dir.mkdir(parents=True, exist_ok=True)
        with self._experiment_scope(ticket.key):  # every stage in its folder, its own helpers; undone after
            if not self.capture_output:
                return self._execute(ticket, data_dir)
            with CapturedOutput(data_dir):
                return self._execute(ticket, data_dir)

    def _experiment_scope(self, key: str):
        experiment = self.experiments.get(key)
        if experiment is None:
            return contextlib.nullcontext()
        return experiment_scope(experiment.path.parent, self.root, keep=frozenset({module_name(experiment)}))

    def _execute(self, ticket: RunTicket, data_dir: Path) -> RunResult:
        from psychopy import logging

        key = ticket.key
        seed = ticket.seed if ticket.seed is not None else secrets.randbits(32)
        active = ActiveRun(ticket=ticket, data_dir=data_dir, exp_info={})
        run_log = logging.LogFile(str(data_dir / "run.log"), level=logging.EXP, filemode="w")
        guard = GcGuard()
        outcome, error, tb = "completed", None, None
        module = None
        sim = None
        try:
            if ticket.stop_requested:
                raise _StoppedBeforeStart()
            experiment = self.experiment(key)
            module = load_module(experiment, self.cache_dir, self.root)
            exp_info = self._build_exp_info(module, ticket.exp_info)
            extra = dict(ticket.manifest_extra)
            if ticket.simulate is not None:
                sim = simulate.SimulatedRun(ticket.simulate.with_seed(seed), data_dir, experiment.path, self.time)
                exp_info["simulated"] = True  # in every row: never mistaken for a participant's data
                extra.update(sim.manifest())
            active.exp_info = exp_info
            manifest = records.start_record(
                data_dir, run_id=ticket.run_id, key=key, experiment_path=experiment.path, root=self.root,
                script=experiment.script, exp_info=dict(exp_info), seed=seed,
                extra={"priority": priority.report(), **extra})
            records.update_manifest(data_dir, clock=session_clock.describe(self.clock_format))
            if sim is not None:
                sim.start(module)
            random.seed(seed)
            import numpy

            numpy.random.seed(seed % 2**32)
            this_exp = module.setupData(expInfo=exp_info, dataDir=str(data_dir))
            this_exp.name = key
            moved = contain_data_file(this_exp, data_dir)  # a participant id like "../x" names no file outside
            if moved:
                logging.warning(f"liaison: data file {moved!r} lay outside the run folder; saving as "
                                f"{this_exp.dataFileName!r}")
            active.this_exp = control.adopt(
                this_exp, frame_hook=sim.frame_hook(guard.at_frame) if sim is not None else guard.at_frame)
            active.guard = guard
            with self._lock:
                self._active = active
            win = self.windows.prepare_for_run()
            if callable(getattr(module, "setupWindow", None)):
                win = module.setupWindow(expInfo=exp_info, win=win)
            if callable(getattr(module, "setupDevices", None)):
                module.setupDevices(expInfo=exp_info, thisExp=this_exp, win=win)
            active.timing = self._start_timing(active, win, guard)
            self.events.publish(RunStarted(
                run_id=ticket.run_id, key=key, exp_info=dict(exp_info), data_dir=str(data_dir),
            ))
            with self._lock:
                if ticket.stop_requested:
                    raise _StoppedBeforeStart()
                self._ticket = None
                self._set_status(RUNNING)
            logging.exp(f"liaison: run {ticket.run_id} of {key} starting, expInfo={exp_info}")
            self.devices.ensure_listeners()  # setupDevices may have re-made a device (keyboards are singletons)
            global_clock = session_clock.make_clock(self.clock_format)  # reset per run, like PsychoPy's Session
            session_clock.sync_iohub(global_clock)
            self.plugins.run_started(run_id=ticket.run_id, key=key, exp_info=exp_info, data_dir=str(data_dir),
                                     manifest=manifest, this_exp=this_exp, win=win, global_clock=global_clock)
            with guard:
                module.run(expInfo=exp_info, thisExp=this_exp, win=win,
                           globalClock=global_clock, thisSession=self._shim)
        except _StoppedBeforeStart:
            outcome = "stopped"
        except (Exception, SystemExit, *psychopy_device_errors()) as exc:  # noqa: BLE001 - anything
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            tb = relative_traceback(traceback.format_exc(), self.root)
            if isinstance(exc, SystemExit):  # core.quit() / sys.exit(0) end it; other codes are failures
                ended_normally, exit_error = exit_outcome(exc)
                if ended_normally:
                    outcome, error, tb = ("stopped" if ticket.stop_requested else "completed"), None, None
                else:
                    error = exit_error
        finally:
            if sim is not None:
                sim.stop()  # the simulated participant answers nothing after the run
        if outcome in ("completed", "stopped") and ticket.stop_requested:
            outcome = ticket.stop_outcome
        result = self._finish(active, module, outcome, error, tb, seed, guard, run_log)
        return result

    def _build_exp_info(self, module, overrides: dict[str, Any]) -> dict[str, Any]:
        from psychopy import data

        exp_info = defaults_from_module(module)
        for name in exp_info:
            if name in self.params:
                exp_info[name] = self.params[name]
        exp_info.update(overrides)
        exp_info["date"] = data.getDateStr()
        if hasattr(module, "expName"):
            exp_info["expName"] = module.expName
        return exp_info

    def _finish(self, active: ActiveRun, module, outcome: str, error: str | None, tb: str | None,
                seed: int, guard: GcGuard, run_log) -> RunResult:
        from psychopy import logging

        ticket = active.ticket
        this_exp = active.this_exp
        timing_report = self._end_timing(active)
        with self._lock:
            self._active = None
            self._ticket = None
        if this_exp is not None:
            control.cancel_pending(this_exp, Conflict(f"run {ticket.run_id} has ended"))
            control.release(this_exp)
            _complete_orphan_row(this_exp)
            self._publish_rows(active, include_partial=True)
            try:
                save = getattr(module, "saveData", None)
                if callable(save):
                    save(this_exp)
                else:
                    this_exp.saveAsWideText(this_exp.dataFileName + ".csv", delim="auto")
            except Exception as exc:  # noqa: BLE001
                if error is None:
                    outcome, error, tb = "failed", f"saving data failed: {exc}", traceback.format_exc()
            this_exp.abort()  # saved once; stop the atexit hook from saving copies
            atexit.unregister(this_exp.close)  # ...and let go of the handler and all its rows
        self.windows.after_run()
        try:  # a full disk must not keep the session from ending the run
            logging.exp(f"liaison: run {ticket.run_id} ended: {outcome}")
            logging.flush()
        except OSError as exc:
            if error is None:
                outcome, error = "failed", f"could not write the run's log: {exc}"
        logging.root.flushed.clear()  # PsychoPy keeps every flushed entry (and the objects they name)
        logging.root.removeTarget(run_log)
        plugin_record = self.plugins.run_ended(run_id=ticket.run_id, key=ticket.key, outcome=outcome,
                                               rows=active.published_rows, error=error,
                                               duration=time.perf_counter() - active.started)
        files = sorted(
            p.relative_to(active.data_dir).as_posix() for p in active.data_dir.rglob("*") if p.is_file()
        )
        result = RunResult(
            run_id=ticket.run_id, key=ticket.key, outcome=outcome, data_dir=active.data_dir,
            data_files=files, rows=active.published_rows, exp_info=dict(active.exp_info), seed=seed,
            duration=time.perf_counter() - active.started, gc_max_pause=guard.max_pause,
            gc_max_boundary_pause=guard.max_boundary_pause,
            error=error, traceback=tb, plugins=plugin_record,
        )
        if timing_report is not None and plugin_record:  # frame-exact plugin hooks' budgets join the timing report
            timing_report["plugins"] = plugin_record
        result.timing = timing_report
        self._write_record(result, ticket)
        self.runs.append(result)
        verdict = {"timing": timing_report, "timing_ok": timing_report.get("timing_ok") if timing_report else None,
                   "timing_problem": timing_report.get("timing_problem") if timing_report else None}
        if outcome == "failed":
            self.events.publish(RunFailed(
                run_id=ticket.run_id, key=ticket.key, error=error or "", traceback=tb or "",
                rows=result.rows, data_files=result.data_files, plugins=result.plugins,
                exp_info=dict(result.exp_info), **verdict,
            ))
        else:
            self.events.publish(RunFinished(
                run_id=ticket.run_id, key=ticket.key, outcome=outcome, rows=result.rows,
                data_files=result.data_files, duration=result.duration, gc_max_pause=result.gc_max_pause,
                gc_max_boundary_pause=result.gc_max_boundary_pause, plugins=result.plugins,
                exp_info=dict(result.exp_info), **verdict,
            ))
        self._set_status(IDLE)
        GcGuard.collect_between_runs()
        return result

    def _write_record(self, result: RunResult, ticket: RunTicket) -> None:
        """Close the run's manifest and STATUS (a failure here must not lose the result)."""
        try:
            if records.read_manifest(result.data_dir) is None:  # ended before it could start
                experiment = self.experiments.get(ticket.key)
                records.start_record(
                    result.data_dir, run_id=ticket.run_id, key=ticket.key,
                    experiment_path=experiment.path if experiment else self.root / ticket.key,
                    root=self.root, script=experiment.script if experiment else None,
                    exp_info=dict(result.exp_info or ticket.exp_info), seed=result.seed,
                    extra=dict(ticket.manifest_extra),
                )
            files = sorted(set(result.data_files) | {records.MANIFEST_FILE, records.STATUS_FILE})
            result.data_files = files
            records.finish_record(result.data_dir, outcome=result.outcome, rows=result.rows, data_files=files,
                                  exp_info=dict(result.exp_info), duration=result.duration, error=result.error,
                                  gc_max_pause=result.gc_max_pause,
                                  gc_max_boundary_pause=result.gc_max_boundary_pause, plugins=result.plugins,
                                  extra={"timing": result.timing})
        except Exception:  # noqa: BLE001
            import logging as std_logging

            std_logging.getLogger("session").exception("could not write the record of run %s", result.run_id)

    def _start_timing(self, active: ActiveRun, win, guard: GcGuard) -> TimingRecorder:
        """Time every flip of this run; live ``run_timing`` events about once a second."""
        ticket, this_exp = active.ticket, active.this_exp
        recorder = TimingRecorder(
            getattr(win, "_monitorFrameRate", None), row_of=lambda: len(this_exp.entries),
            measured_hz=self.windows.measured_rate, gc_guard=guard,
            on_report=lambda report: self.events.publish(RunTiming(run_id=ticket.run_id, key=ticket.key,
                                                                   timing=report)))
        recorder.priority = priority.report()
        recorder.attach(win)
        return recorder

    @staticmethod
    def _end_timing(active: ActiveRun) -> dict[str, Any] | None:
        """Stop timing the run's flips; its report (None if it never got to its first frame)."""
        recorder = active.timing
        if recorder is None:
            return None
        recorder.detach()
        return recorder.summary()

    @staticmethod
    def _describe_result(result: RunResult) -> dict[str, Any]:
        return {
            "run_id": result.run_id, "key": result.key, "outcome": result.outcome,
            "rows": result.rows, "data_files": result.data_files, "duration": result.duration,
            "error": result.error,
        }

    # --- data streaming (main thread, called by Builder via the shim) --------------

    def _publish_rows(self, active: ActiveRun, include_partial: bool = False) -> int:
        this_exp = active.this_exp
        entries = this_exp.entries
        start = active.published_rows
        rows = entries[start:]
        if include_partial and this_exp.thisEntry:
            rows = rows + [this_exp.thisEntry]
        if not rows:
            return 0
        active.published_rows = start + len(rows)
        self.events.publish(DataRows(
            run_id=active.ticket.run_id, key=active.ticket.key, first_row=start, rows=plain_rows(rows),
        ))
        return len(rows)

    def send_experiment_data(self) -> int:
        """Publish rows completed since the last call; returns how many."""
        active = self._active
        if active is None or active.this_exp is None:
            return 0
        published = self._publish_rows(active)
        self.devices.ensure_listeners()  # components made during the trial may have reset a device
        if active.guard is not None and threading.current_thread() is threading.main_thread():
            active.guard.at_trial_boundary()
            self.plugins.trial_boundary()
            if active.timing is not None:
                active.timing.at_trial_boundary()
        return published

    # --- control (any thread) ----------------------------------------------------

    def _require_run(self, what: str) -> ActiveRun:
        active = self._active
        if active is None:
            raise Conflict(f"cannot {what}: no experiment is running")
        return active

    def _on_frame(self, active: ActiveRun, fn) -> Future:
        """Run ``fn(latency)`` on the experiment's thread at its next frame."""
        if threading.current_thread() is threading.main_thread():
            future: Future = Future()
            try:
                future.set_result(fn(0.0))
            except Exception as exc:  # noqa: BLE001
                future.set_exception(exc)
            return future
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
            done: Future = Future()
            done.set_result(0.0)
            return done

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
            done: Future = Future()
            done.set_result(dict(self.params))
            return done

        def apply(latency: float) -> dict[str, Any]:
            active.exp_info.update(values)  # same dict as thisExp.extraInfo: later rows carry it
            snapshot = dict(active.exp_info)
            self.events.publish(ExpInfoChanged(run_id=active.ticket.run_id, exp_info=snapshot))
            return snapshot

        return self._on_frame(active, apply)

    def set_exp_info_item(self, name: str, value: Any) -> Future:
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
            done: Future = Future()
            done.set_result(True)
            return done

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
        return self._move_trials("skip", n)

    def rewind_trials(self, n: int = 1) -> Future:
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

    # --- main-thread service ----------------------------------------------------------

    def idle(self) -> None:
        """Between runs: keep the window responsive and logs flushed."""
        from psychopy import logging

        self.windows.idle()
        logging.flush()
        if self._ticket is None and self._active is None:  # between runs: inspect one experiment
            pending = self.checks.pending(list(self.experiments.values()))
            if pending is not None:
                try:
                    self.checks.check(pending)
                except Exception:  # noqa: BLE001 - a broken file is reported when it is run or listed
                    logging.warning(f"liaison: could not inspect {pending.key}")

    def serve_forever(self, idle_interval: float = 0.1) -> None:
        """Run queued tasks on this (main) thread until ``self.queue.stop()``."""
        self._require_main("serve_forever")
        self.queue.run_forever(idle=self.idle, idle_interval=idle_interval)

    def submit_run(self, key: str, exp_info: dict[str, Any] | None = None, *,
                   seed: int | None = None, simulate: dict[str, Any] | None = None,
                   manifest_extra: dict[str, Any] | None = None,
                   run_id: str | None = None) -> tuple[RunTicket, Future]:
        """Accept a run from any thread and queue it for the main thread."""
        ticket = self.prepare_run(key, exp_info, seed=seed, simulate=simulate, manifest_extra=manifest_extra,
                                  run_id=run_id)
        return ticket, self.queue.submit(self.execute, ticket)


def relative_traceback(text: str, root: Path) -> str:
    """A traceback as clients may see it: paths under the session root relative to it, Python's own shortened.

    Clients learn where in the experiment it failed, not how the stimulus PC's disk is laid out.
    """
    import sys
    import sysconfig

    prefixes = [(str(root) + os.sep, "")]
    for name in ("purelib", "platlib", "stdlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            prefixes.append((path + os.sep, f"<{name}>/"))
    prefixes.append((sys.prefix + os.sep, "<python>/"))
    for prefix, replacement in sorted(set(prefixes), key=lambda item: -len(item[0])):
        text = text.replace(prefix, replacement)
    return text


def _complete_orphan_row(this_exp) -> None:
    """Give the row a stop interrupted the trial and expInfo columns every other row has.

    PsychoPy saves that unfinished row (``getAllEntries``) but fills in loop
    and expInfo values only in ``nextEntry``, so a participant id set live
    would be missing from the very row where the experimenter intervened.
    """
    entry = this_exp.thisEntry
    if not entry:
        return
    for loop in list(getattr(this_exp, "loopsUnfinished", [])):
        try:
            this_exp.updateEntryFromLoop(loop)
        except Exception:  # noqa: BLE001 - a finished or odd loop: keep the row as it is
            pass
    if isinstance(this_exp.extraInfo, dict):
        for name, value in this_exp.extraInfo.items():
            entry.setdefault(name, value)


def _policy(values: dict[str, Any] | None) -> "simulate.Policy | None":
    if values is None:
        return None
    if not isinstance(values, dict):
        raise TypeError("simulate must be a dict of policy settings (or None)")
    return simulate.Policy.from_dict(values)


class _StoppedBeforeStart(Exception):
    """A stop arrived while the run was being set up."""
