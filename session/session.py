"""The Session: runs PsychoPy experiments one after another in one window.

Threading contract: :meth:`Session.run`, :meth:`Session.setup_window` and
:meth:`Session.serve_forever` belong to the main thread (the window's
thread). Every other public method is safe from any thread; commands that
touch a running experiment are applied by the experiment's own thread at its
next frame (see :mod:`session.control`) and return a Future.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from . import priority, simulate
from .builder_shim import BuilderSessionShim
from .capture import CapturedOutput
from .clock import check_clock
from .devices import SessionDevices, require_between_runs, session_device_names
from .errors import Busy, Conflict, NotFound, WrongThread
from .events import DataRows, ExperimentAdded, Publisher, StatusChanged
from .execution import RunExecution
from .experiments import Experiment, defaults_from_module, discover, load_module, make_experiment, module_name
from .isolation import experiment_scope
from .live import LiveControls
from .mainloop import MainThreadQueue
from .plugins import PluginHost
from .problems import ExperimentProblems, ProblemChecks
from .rescan import find_new
from .runs import IDLE, STARTING, ActiveRun, RunResult, RunTicket, call_now, new_run_id, plain_rows
from .window import WindowHost, WindowParams

__all__ = ["Session", "RunResult", "RunTicket"]


class Session(LiveControls):
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
        """idle, starting, running, paused or stopping."""
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
                "runs": [r.describe() for r in self.runs[-50:]],
            }

    # --- experiments -------------------------------------------------------------

    def _register(self, experiment: Experiment) -> None:
        self.experiments[experiment.key] = experiment
        self.events.publish(ExperimentAdded(
            key=experiment.key, path=experiment.path.relative_to(self.root).as_posix(),
            kind=experiment.kind, exp_info=dict(experiment.exp_info),
        ))

    def list_experiments(self) -> list[dict[str, Any]]:
        """Every known experiment with its readiness (problems, devices)."""
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
        """The experiment registered as ``key``; NotFound naming the known keys."""
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
            return call_now(fn, *args)
        return self.queue.submit(fn, *args)

    def list_devices(self) -> list[dict[str, Any]]:
        """The session's devices: name, class, params (or the experiment that set it up), ready, error."""
        return self.devices.describe()

    def add_device(self, name: str, device_class: str, params: dict[str, Any] | None = None) -> Future:
        """Create a session device between runs (main thread; a Future of its description)."""
        return self._between_runs("add a device", self.devices.add, name, device_class, params or {})

    def remove_device(self, name: str) -> Future:
        """Close and forget a session device between runs (a Future of whether it existed)."""
        return self._between_runs("remove a device", self.devices.remove, name)

    def list_available_devices(self, device_class: str | None = None) -> Future:
        """Devices PsychoPy can find, by class, between runs (a Future)."""
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
                return RunExecution(self, ticket, data_dir).run()
            with CapturedOutput(data_dir):
                return RunExecution(self, ticket, data_dir).run()

    def _experiment_scope(self, key: str):
        experiment = self.experiments.get(key)
        if experiment is None:
            return contextlib.nullcontext()
        return experiment_scope(experiment.path.parent, self.root, keep=frozenset({module_name(experiment)}))

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


def _policy(values: dict[str, Any] | None) -> "simulate.Policy | None":
    if values is None:
        return None
    if not isinstance(values, dict):
        raise TypeError("simulate must be a dict of policy settings (or None)")
    return simulate.Policy.from_dict(values)
