"""Execute a session plan on the server, one step at a time, journalled so it survives restarts.

The plan's whole state (its steps, where it is, every attempt's run id and
outcome) is one JSON value in the journal's ``state`` table, written before
each step starts and after it ends. A run's id is chosen and written down
*before* the run is asked for, so after a crash the server knows which run
the interrupted step was: the journal's recovery has closed it as aborted
by then, and the plan's ``on_failure.interrupted`` says whether to run the
step again or skip it. A step is only ever started once per attempt, and
the next step only after the previous one has been settled on disk.

Everything here runs on the server's event loop; worker commands go through
the same host the clients' commands use.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import datetime
from typing import Any, Callable

from session.events import PlanChanged
from session.runs import new_run_id
from session.worker import WorkerError

from ..protocol import ErrorCode, ProtocolError
from ..protocol.plan_file import Plan, PlanError, parse_plan, plan_from_dict
from .schedule import unroll


log = logging.getLogger("liaison.plans")
STATE_KEY = "plan"
ACTIVE = ("running", "pausing", "resting", "waiting")  # a plan in these resumes by itself after a restart
HELD = ("paused", "stopped")  # resumes on plan_continue
ENDED = ("finished", "cancelled")
BUSY_RETRY = 0.5  # s between attempts to start a run while someone else's run holds the session
START_TIMEOUT = 60.0


class PlanService:
    """The server's plan queue: ``handle`` serves the ``plan_*`` commands; :meth:`resume` after a start."""

    def __init__(self, journal, hub, publisher, link, shutting_down: Callable[[], bool]) -> None:
        self.journal = journal  # where the plan's progress is kept (it survives crashes and restarts)
        self.hub = hub  # run ends arrive as its events
        self.publisher = publisher
        self.link = link  # the session worker
        self.shutting_down = shutting_down
        self.state: dict[str, Any] | None = journal.get_state(STATE_KEY)
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._ends: dict[str, asyncio.Future] = {}  # run id -> its end event's (outcome, error)
        self._current_run: str | None = None
        self._skip = False

    # --- lifecycle ----------------------------------------------------------------------------
    def attach(self) -> None:
        """On the loop, once the worker is up: listen for run ends and resume an interrupted plan."""
        self.hub.listeners.append(self._on_event)
        self._wake = asyncio.Event()
        state = self.state
        if state is None or state["status"] in ENDED:
            return
        self._settle_interrupted(state)
        if state["status"] == "resting":
            state["status"] = "running"
        self._save(f"resumed after a server restart at step {state['cursor']}")
        if state["status"] in ACTIVE:
            self._spawn()

    def _settle_interrupted(self, state: dict[str, Any]) -> None:
        """A step that was running when the server went away: settle it from the journal's record."""
        if state["cursor"] >= len(state["steps"]):
            return
        step = state["steps"][state["cursor"]]
        if step["kind"] != "run" or step["status"] != "running" or not step["attempts"]:
            return
        attempt = step["attempts"][-1]
        record = self.journal.run(attempt["run_id"])
        if record is None:  # asked for, never started: run it (as a fresh attempt)
            attempt.update(outcome="not_started", error="the server stopped before the run started")
            step["status"] = "pending"
            return
        outcome = record.get("outcome") or "aborted"
        attempt.update(outcome=outcome, error=record.get("error"), rows=record.get("rows"), ended=record.get("ended"))
        if outcome == "completed":
            self._step_done(state, step, "done")
            return
        attempt["interrupted"] = True
        if state["on_failure"]["interrupted"] == "rerun":
            step["status"] = "pending"
        else:
            self._step_done(state, step, "skipped")

    def _spawn(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run_plan())

    # --- journal and events ----------------------------------------------------------------------
    def _save(self, message: str) -> None:
        state = self.state
        state["message"] = message
        self.journal.set_state(STATE_KEY, state)
        cursor = state["cursor"]
        step = state["steps"][cursor] if cursor < len(state["steps"]) else None
        self.publisher.publish(PlanChanged(
            plan_id=state["plan_id"], name=state["name"], status=state["status"], cursor=cursor,
            steps=len(state["steps"]), step=step, message=message))

    def _on_event(self, event) -> None:
        if event.type in ("run_finished", "run_failed"):
            waiter = self._ends.get(event.run_id)
            if waiter is not None and not waiter.done():
                waiter.set_result((getattr(event, "outcome", "failed"), getattr(event, "error", None),
                                   getattr(event, "rows", None)))

    # --- the queue ------------------------------------------------------------------------------------
    async def _run_plan(self) -> None:
        try:
            while True:
                state = self.state
                if state["status"] == "pausing":
                    state["status"] = "paused"
                    self._save("paused after the run")
                if state["status"] not in ACTIVE:
                    return  # paused, stopped, cancelled: plan_continue spawns a new task
                if state["cursor"] >= len(state["steps"]):
                    state["status"] = "finished"
                    state["ended"] = time.time()
                    self._save("the plan has run to its end")
                    return
                step = state["steps"][state["cursor"]]
                if step["kind"] == "break":
                    await self._break(state, step)
                else:
                    await self._run_step(state, step)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the plan stops loudly; its state is on disk to continue from
            log.exception("plan %s stopped by an internal error", self.state and self.state.get("plan_id"))
            if self.state is not None and self.state["status"] in ACTIVE:
                self.state["status"] = "stopped"
                self._save("stopped by an internal error (see the server log); plan_continue retries")

    async def _break(self, state: dict[str, Any], step: dict[str, Any]) -> None:
        brk = step["break"]
        self._skip = False
        if step["status"] == "pending":
            step["status"] = "active"
            step["started"] = time.time()
        if brk["kind"] == "timed":
            state["status"] = "resting"
            self._save(f"resting {brk['seconds']:g} s" + (f": {brk['message']}" if brk["message"] else ""))
            deadline = step["started"] + brk["seconds"]
            while time.time() < deadline and state["status"] == "resting" and not self._skip:
                await self._sleep(deadline - time.time())
            if state["status"] == "resting":
                state["status"] = "running"
        else:
            state["status"] = "waiting"
            self._save("waiting for a controller's plan_continue" + (f": {brk['message']}" if brk["message"] else ""))
            while state["status"] == "waiting" and not self._skip:
                await self._sleep(None)
            if state["status"] == "waiting":
                state["status"] = "running"
        if state["status"] in ENDED:
            return
        self._step_done(state, step, "skipped" if self._skip else "done")
        self._skip = False
        self._save(f"break {step['index']} over")

    async def _sleep(self, seconds: float | None) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _run_step(self, state: dict[str, Any], step: dict[str, Any]) -> None:
        run_id = new_run_id(step["key"])
        attempt = {"run_id": run_id, "started": time.time(), "outcome": None}
        step["attempts"].append(attempt)
        step["status"] = "running"
        self._skip = False
        loop = asyncio.get_running_loop()
        end = loop.create_future()
        self._ends[run_id] = end
        self._save(f"step {step['index']}: {step['participant']} runs {step['key']} (run {run_id})")  # on disk first
        try:
            error = await self._start(state, step, run_id)
            if error is not None:
                attempt.update(outcome="failed", error=error)
            else:
                self._current_run = run_id
                outcome, run_error, rows = await end
                attempt.update(outcome=outcome, error=run_error, rows=rows, ended=time.time())
        finally:
            self._ends.pop(run_id, None)
            self._current_run = None
        if self.shutting_down():  # the server's stop ended the run: settle it after the restart
            raise asyncio.CancelledError()
        outcome = attempt["outcome"]
        if state["status"] == "cancelled":
            self._step_done(state, step, "cancelled")
            self._save(f"cancelled during run {run_id}")
        elif outcome == "completed":
            self._step_done(state, step, "done")
            self._save(f"run {run_id} completed")
        elif outcome == "stopped":
            self._step_done(state, step, "skipped" if self._skip else "stopped")
            self._save(f"run {run_id} was stopped" + (" (skipped)" if self._skip else ""))
        else:
            self._after_failure(state, step, attempt)
        self._skip = False

    def _after_failure(self, state: dict[str, Any], step: dict[str, Any], attempt: dict[str, Any]) -> None:
        policy = state["on_failure"]
        what = f"run {attempt['run_id']} {attempt['outcome']}: {attempt.get('error') or 'no detail'}"
        failures = sum(1 for a in step["attempts"] if a.get("outcome") in ("failed", "aborted"))
        if policy["action"] == "retry" and failures <= policy["retries"]:
            step["status"] = "pending"
            self._save(f"{what}; retrying ({failures} of {policy['retries']})")
        elif policy["action"] == "stop":
            step["status"] = "failed"
            state["status"] = "stopped"
            self._save(f"{what}; the plan stops (plan_continue retries the step, plan_skip skips it)")
        else:
            self._step_done(state, step, "failed")
            self._save(f"{what}; skipping to the next step")

    async def _start(self, state: dict[str, Any], step: dict[str, Any], run_id: str) -> str | None:
        """Ask the worker for the run; waits while another client's run holds the session."""
        manifest = {"plan": {"plan_id": state["plan_id"], "name": state["name"], "step": step["index"],
                             "participant": step["participant"], "cell": step["cell"],
                             "attempt": len(step["attempts"])}}
        while True:
            try:  # (the link waits for a worker that is being restarted)
                await self.link.call("start_run", START_TIMEOUT, key=step["key"], exp_info=step["exp_info"],
                                     seed=step["seed"], simulate=state["simulate"], manifest_extra=manifest,
                                     run_id=run_id)
                return None
            except WorkerError as exc:
                if exc.code != "busy":
                    return f"{exc.code}: {exc}"
            except Exception as exc:  # noqa: BLE001 - a dead or restarting worker: try again shortly
                if self.shutting_down():
                    raise asyncio.CancelledError() from exc
            if state["status"] == "cancelled" or self._skip:
                return "not started: " + ("the plan was cancelled" if state["status"] == "cancelled" else "skipped")
            await asyncio.sleep(BUSY_RETRY)

    @staticmethod
    def _step_done(state: dict[str, Any], step: dict[str, Any], status: str) -> None:
        step["status"] = status
        if state["cursor"] == step["index"]:
            state["cursor"] += 1

    # --- commands ------------------------------------------------------------------------------------
    def handle(self, conn, cmd: str, args: dict[str, Any]):
        """Serve one ``plan_*`` command (validated by the protocol already)."""
        return getattr(self, f"cmd_{cmd}")(**args)

    def _require(self, *statuses: str) -> dict[str, Any]:
        state = self.state
        if state is None or state["status"] not in statuses:
            now = "no plan" if state is None else f"the plan is {state['status']}"
            raise ProtocolError(ErrorCode.CONFLICT, f"{now}; this needs a plan that is {' or '.join(statuses)}")
        return state

    async def cmd_plan_start(self, toml: str | None = None, plan: dict | None = None,
                       simulate: dict | None = None) -> dict[str, Any]:
        """Start a plan from TOML text or a dict (``simulate`` dry-runs it); Busy while another is active."""
        if self.state is not None and self.state["status"] not in ENDED:
            raise ProtocolError(ErrorCode.BUSY, f"plan {self.state['name']!r} is {self.state['status']}; "
                                                "cancel it first (plan_cancel)")
        try:
            parsed: Plan = parse_plan(toml) if toml is not None else plan_from_dict(plan)
        except PlanError as exc:
            raise ProtocolError(ErrorCode.INVALID_ARGS, str(exc)) from None
        known = await self._known_experiments()
        missing = [e.key for e in parsed.experiments if e.key not in known]
        if self.state is not None and self.state["status"] not in ENDED:  # started while we asked
            raise ProtocolError(ErrorCode.BUSY, f"plan {self.state['name']!r} is {self.state['status']}")
        if missing:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"the plan names experiments the server does not have: "
                                                     f"{', '.join(missing)} (known: {', '.join(sorted(known))})")
        policy = simulate if simulate is not None else (
            parsed.simulate.model_dump() if parsed.simulate is not None else None)
        self.state = {
            "plan_id": f"{datetime.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}", "name": parsed.name,
            "plan": parsed.model_dump(mode="json"), "simulate": policy, "status": "running", "cursor": 0,
            "steps": unroll(parsed), "on_failure": parsed.on_failure.model_dump(), "started": time.time(),
            "ended": None, "message": "",
        }
        self._save(f"plan {parsed.name!r} started: {len(self.state['steps'])} steps"
                   + (" (dry run)" if policy is not None else ""))
        self._spawn()
        return self.describe()

    async def _known_experiments(self) -> set[str]:
        return {e["key"] for e in await self.link.call("list_experiments", 30)}

    def cmd_plan_pause(self) -> dict[str, Any]:
        """Hold the plan: after the run in progress (``pausing``) or at once (``paused``)."""
        state = self._require("running", "resting", "waiting")
        # A run in progress includes one asked for whose start the worker has not answered yet.
        running = self._current_run is not None or any(s["status"] == "running" for s in state["steps"])
        state["status"] = "pausing" if running else "paused"
        self._save("pausing after the run in progress" if running else "paused")
        self._wake.set()
        return self.describe()

    def cmd_plan_continue(self) -> dict[str, Any]:
        """Resume a held plan; a step that failed and stopped it is run again."""
        state = self._require("paused", "stopped", "waiting", "pausing")
        if state["status"] == "stopped" and state["cursor"] < len(state["steps"]):
            step = state["steps"][state["cursor"]]
            if step["status"] == "failed":
                step["status"] = "pending"
        state["status"] = "running"
        self._save("continuing")
        self._wake.set()
        self._spawn()
        return self.describe()

    async def cmd_plan_skip(self) -> dict[str, Any]:
        """Skip the current step, stopping its run if one is in progress."""
        state = self._require(*ACTIVE, *HELD)
        self._skip = True
        if self._current_run is not None:
            await self._stop_run()
        elif state["status"] in ("resting", "waiting"):
            self._wake.set()
        elif state["cursor"] < len(state["steps"]):
            step = state["steps"][state["cursor"]]
            self._step_done(state, step, "skipped")
            self._skip = False
            self._save(f"step {step['index']} skipped")
        return self.describe()

    async def cmd_plan_cancel(self) -> dict[str, Any]:
        """Cancel the plan, stopping its run if one is in progress; journalled as cancelled."""
        state = self._require(*ACTIVE, *HELD)
        state["status"] = "cancelled"
        state["ended"] = time.time()
        self._save("cancelled")
        self._wake.set()
        if self._current_run is not None:
            await self._stop_run()
        return self.describe()

    async def _stop_run(self) -> None:
        try:
            await self.link.call("stop", 30)
        except Exception as exc:  # noqa: BLE001 - e.g. it ended meanwhile: nothing to stop
            log.info("plan: stopping run %s: %s", self._current_run, exc)

    def cmd_plan_state(self) -> dict[str, Any]:
        """The plan's state for clients (:meth:`describe`)."""
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """The plan's state for clients (``{"status": "none"}`` when no plan was ever started)."""
        if self.state is None:
            return {"status": "none"}
        state = self.state
        done = [s for s in state["steps"] if s["kind"] == "run" and s["status"] in ("done", "stopped")]
        per_participant: dict[str, dict[str, int]] = {}
        for step in state["steps"]:
            if step["kind"] == "run":
                entry = per_participant.setdefault(step["participant"], {"runs": 0, "done": 0})
                entry["runs"] += 1
                entry["done"] += step["status"] in ("done", "stopped", "skipped", "failed", "cancelled")
        return {key: state[key] for key in ("plan_id", "name", "status", "cursor", "steps", "simulate",
                                            "on_failure", "started", "ended", "message")} | {
            "completed_runs": len(done), "participants": per_participant}
