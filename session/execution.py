"""One run, from an accepted ticket to its result: set up, run the experiment's own ``run()``, save, record.

:class:`RunExecution` is made for one ticket on the main thread (the window's
thread) and used once. Its contract: whatever the experiment does (raises,
calls ``core.quit()``, is stopped before it starts, fills the disk), the run
ends with a :class:`~session.runs.RunResult`, its data saved once, its manifest
and STATUS closed, and a ``run_finished`` or ``run_failed`` event published;
nothing is raised to the caller.
"""

from __future__ import annotations

import atexit
import os
import random
import secrets
import time
import traceback
from pathlib import Path
from typing import Any

from . import clock as session_clock
from . import control, priority, records, simulate
from .devices import psychopy_device_errors
from .errors import Conflict
from .events import RunFailed, RunFinished, RunStarted, RunTiming
from .experiments import defaults_from_module, load_module
from .gcguard import GcGuard
from .isolation import exit_outcome
from .names import contain_data_file
from .runs import IDLE, RUNNING, ActiveRun, RunResult, RunTicket
from .timing import TimingRecorder


class RunExecution:
    """Runs ``ticket`` in ``data_dir`` for ``session``; :meth:`run` once, on the main thread.

    ``session`` is the :class:`session.session.Session` that accepted the ticket (not
    imported here: it imports this module); the run sets its ``_active``/``_ticket``
    under its ``_lock`` and publishes through its ``events``.
    """

    def __init__(self, session: Any, ticket: RunTicket, data_dir: Path) -> None:
        self.session = session
        self.ticket = ticket
        self.active = ActiveRun(ticket=ticket, data_dir=data_dir, exp_info={})
        self.seed = ticket.seed if ticket.seed is not None else secrets.randbits(32)
        self.guard = GcGuard()
        self.module = None
        self.sim: simulate.SimulatedRun | None = None

    def run(self) -> RunResult:
        """Set up and run the experiment; failures become a ``failed`` result, not an exception."""
        from psychopy import logging

        ticket = self.ticket
        run_log = logging.LogFile(str(self.active.data_dir / "run.log"), level=logging.EXP, filemode="w")
        outcome, error, tb = "completed", None, None
        try:
            self._start_and_run()
        except _StoppedBeforeStart:
            outcome = "stopped"
        except (Exception, SystemExit, *psychopy_device_errors()) as exc:  # noqa: BLE001 - anything
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            tb = relative_traceback(traceback.format_exc(), self.session.root)
            if isinstance(exc, SystemExit):  # core.quit() / sys.exit(0) end it; other codes are failures
                ended_normally, exit_error = exit_outcome(exc)
                if ended_normally:
                    outcome, error, tb = ("stopped" if ticket.stop_requested else "completed"), None, None
                else:
                    error = exit_error
        finally:
            if self.sim is not None:
                self.sim.stop()  # the simulated participant answers nothing after the run
        if outcome in ("completed", "stopped") and ticket.stop_requested:
            outcome = ticket.stop_outcome
        return self._finish(outcome, error, tb, run_log)

    # --- before and during the experiment ---------------------------------------------

    def _start_and_run(self) -> None:
        from psychopy import logging

        s, ticket, active, guard = self.session, self.ticket, self.active, self.guard
        key, data_dir = ticket.key, active.data_dir
        if ticket.stop_requested:
            raise _StoppedBeforeStart()
        experiment = s.experiment(key)
        module = self.module = load_module(experiment, s.cache_dir, s.root)
        exp_info = self._build_exp_info(module, ticket.exp_info)
        extra = dict(ticket.manifest_extra)
        if ticket.simulate is not None:
            self.sim = simulate.SimulatedRun(ticket.simulate.with_seed(self.seed), data_dir, experiment.path, s.time)
            exp_info["simulated"] = True  # in every row: never mistaken for a participant's data
            extra.update(self.sim.manifest())
        active.exp_info = exp_info
        manifest = records.start_record(
            data_dir, run_id=ticket.run_id, key=key, experiment_path=experiment.path, root=s.root,
            script=experiment.script, exp_info=dict(exp_info), seed=self.seed,
            extra={"priority": priority.report(), **extra})
        records.update_manifest(data_dir, clock=session_clock.describe(s.clock_format))
        if self.sim is not None:
            self.sim.start(module)
        random.seed(self.seed)
        import numpy

        numpy.random.seed(self.seed % 2**32)
        this_exp = module.setupData(expInfo=exp_info, dataDir=str(data_dir))
        this_exp.name = key
        moved = contain_data_file(this_exp, data_dir)  # a participant id like "../x" names no file outside
        if moved:
            logging.warning(f"liaison: data file {moved!r} lay outside the run folder; saving as "
                            f"{this_exp.dataFileName!r}")
        sim = self.sim
        active.this_exp = control.adopt(
            this_exp, frame_hook=sim.frame_hook(guard.at_frame) if sim is not None else guard.at_frame)
        active.guard = guard
        with s._lock:
            s._active = active
        win = s.windows.prepare_for_run()
        if callable(getattr(module, "setupWindow", None)):
            win = module.setupWindow(expInfo=exp_info, win=win)
        if callable(getattr(module, "setupDevices", None)):
            module.setupDevices(expInfo=exp_info, thisExp=this_exp, win=win)
        active.timing = self._start_timing(win)
        s.events.publish(RunStarted(run_id=ticket.run_id, key=key, exp_info=dict(exp_info), data_dir=str(data_dir)))
        with s._lock:
            if ticket.stop_requested:
                raise _StoppedBeforeStart()
            s._ticket = None
            s._set_status(RUNNING)
        logging.exp(f"liaison: run {ticket.run_id} of {key} starting, expInfo={exp_info}")
        s.devices.ensure_listeners()  # setupDevices may have re-made a device (keyboards are singletons)
        global_clock = session_clock.make_clock(s.clock_format)  # reset per run, like PsychoPy's Session
        session_clock.sync_iohub(global_clock)
        s.plugins.run_started(run_id=ticket.run_id, key=key, exp_info=exp_info, data_dir=str(data_dir),
                              manifest=manifest, this_exp=this_exp, win=win, global_clock=global_clock)
        with guard:
            module.run(expInfo=exp_info, thisExp=this_exp, win=win, globalClock=global_clock, thisSession=s._shim)

    def _build_exp_info(self, module, overrides: dict[str, Any]) -> dict[str, Any]:
        """The experiment's defaults, then the session's params, then the run's own values; a fresh date."""
        from psychopy import data

        params = self.session.params
        exp_info = defaults_from_module(module)
        for name in exp_info:
            if name in params:
                exp_info[name] = params[name]
        exp_info.update(overrides)
        exp_info["date"] = data.getDateStr()
        if hasattr(module, "expName"):
            exp_info["expName"] = module.expName
        return exp_info

    def _start_timing(self, win) -> TimingRecorder:
        """Time every flip of this run; live ``run_timing`` events about once a second."""
        s, ticket, this_exp = self.session, self.ticket, self.active.this_exp
        recorder = TimingRecorder(
            getattr(win, "_monitorFrameRate", None), row_of=lambda: len(this_exp.entries),
            measured_hz=s.windows.measured_rate, gc_guard=self.guard,
            on_report=lambda report: s.events.publish(RunTiming(run_id=ticket.run_id, key=ticket.key,
                                                                timing=report)))
        recorder.priority = priority.report()
        recorder.attach(win)
        return recorder

    # --- after the experiment -----------------------------------------------------------

    def _finish(self, outcome: str, error: str | None, tb: str | None, run_log) -> RunResult:
        from psychopy import logging

        s, ticket, active, guard = self.session, self.ticket, self.active, self.guard
        this_exp = active.this_exp
        timing_report = self._end_timing()
        with s._lock:
            s._active = None
            s._ticket = None
        if this_exp is not None:
            control.cancel_pending(this_exp, Conflict(f"run {ticket.run_id} has ended"))
            control.release(this_exp)
            _complete_orphan_row(this_exp)
            s._publish_rows(active, include_partial=True)
            try:
                save = getattr(self.module, "saveData", None)
                if callable(save):
                    save(this_exp)
                else:
                    this_exp.saveAsWideText(this_exp.dataFileName + ".csv", delim="auto")
            except Exception as exc:  # noqa: BLE001
                if error is None:
                    outcome, error, tb = "failed", f"saving data failed: {exc}", traceback.format_exc()
            this_exp.abort()  # saved once; stop the atexit hook from saving copies
            atexit.unregister(this_exp.close)  # ...and let go of the handler and all its rows
        s.windows.after_run()
        try:  # a full disk must not keep the session from ending the run
            logging.exp(f"liaison: run {ticket.run_id} ended: {outcome}")
            logging.flush()
        except OSError as exc:
            if error is None:
                outcome, error = "failed", f"could not write the run's log: {exc}"
        logging.root.flushed.clear()  # PsychoPy keeps every flushed entry (and the objects they name)
        logging.root.removeTarget(run_log)
        plugin_record = s.plugins.run_ended(run_id=ticket.run_id, key=ticket.key, outcome=outcome,
                                            rows=active.published_rows, error=error,
                                            duration=time.perf_counter() - active.started)
        files = sorted(p.relative_to(active.data_dir).as_posix() for p in active.data_dir.rglob("*") if p.is_file())
        result = RunResult(
            run_id=ticket.run_id, key=ticket.key, outcome=outcome, data_dir=active.data_dir,
            data_files=files, rows=active.published_rows, exp_info=dict(active.exp_info), seed=self.seed,
            duration=time.perf_counter() - active.started, gc_max_pause=guard.max_pause,
            gc_max_boundary_pause=guard.max_boundary_pause,
            error=error, traceback=tb, plugins=plugin_record,
        )
        if timing_report is not None and plugin_record:  # frame-exact plugin hooks' budgets join the timing report
            timing_report["plugins"] = plugin_record
        result.timing = timing_report
        self._write_record(result)
        s.runs.append(result)
        self._publish_end(result)
        s._set_status(IDLE)
        GcGuard.collect_between_runs()
        return result

    def _end_timing(self) -> dict[str, Any] | None:
        """Stop timing the run's flips; its report (None if it never got to its first frame)."""
        recorder = self.active.timing
        if recorder is None:
            return None
        recorder.detach()
        return recorder.summary()

    def _write_record(self, result: RunResult) -> None:
        """Close the run's manifest and STATUS (a failure here must not lose the result)."""
        s, ticket = self.session, self.ticket
        try:
            if records.read_manifest(result.data_dir) is None:  # ended before it could start
                experiment = s.experiments.get(ticket.key)
                records.start_record(
                    result.data_dir, run_id=ticket.run_id, key=ticket.key,
                    experiment_path=experiment.path if experiment else s.root / ticket.key,
                    root=s.root, script=experiment.script if experiment else None,
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

    def _publish_end(self, result: RunResult) -> None:
        """``run_failed`` or ``run_finished``, with the timing verdict."""
        timing = result.timing
        verdict = {"timing": timing, "timing_ok": timing.get("timing_ok") if timing else None,
                   "timing_problem": timing.get("timing_problem") if timing else None}
        events = self.session.events
        if result.outcome == "failed":
            events.publish(RunFailed(
                run_id=result.run_id, key=result.key, error=result.error or "", traceback=result.traceback or "",
                rows=result.rows, data_files=result.data_files, plugins=result.plugins,
                exp_info=dict(result.exp_info), **verdict,
            ))
        else:
            events.publish(RunFinished(
                run_id=result.run_id, key=result.key, outcome=result.outcome, rows=result.rows,
                data_files=result.data_files, duration=result.duration, gc_max_pause=result.gc_max_pause,
                gc_max_boundary_pause=result.gc_max_boundary_pause, plugins=result.plugins,
                exp_info=dict(result.exp_info), **verdict,
            ))


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


class _StoppedBeforeStart(Exception):
    """A stop arrived while the run was being set up."""
