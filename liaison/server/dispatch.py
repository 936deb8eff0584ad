"""Turn validated requests into work: worker commands or local answers.

``start`` is synchronous on purpose: it hands the command to the worker in
the order requests arrived (pause before resume, always), and returns either
a plain result or an awaitable for the reply. The dispatcher gets only what
it uses: the session link, the hub, the run history and who is connected.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

from ..protocol import ErrorCode, ProtocolError, RawResult, Topic
from ..store.runs import RunHistory
from .clients import ClientRegistry
from .hub import Hub, Subscriber
from .link import SLOW_TIMEOUT, SessionLink

# Commands that map one-to-one onto a worker method: cmd -> method.
WORKER_COMMANDS: dict[str, str] = {
    "list_experiments": "list_experiments",
    "rescan": "rescan",
    "pause": "pause",
    "resume": "resume",
    "stop": "stop",
    "get_exp_info": "get_exp_info",
    "add_data": "add_data",
    "annotate": "annotate",
    "skip_trials": "skip_trials",
    "rewind_trials": "rewind_trials",
    "list_devices": "list_devices",
    "add_device": "add_device",
    "remove_device": "remove_device",
}
REPLAY_LIMIT = 10_000  # events in one `replay` page


class Caller(Protocol):
    """What a command may know of the connection that sent it."""

    client_id: str
    role: str
    name: str | None
    subscriber: Subscriber


class Dispatcher:
    """Carries out commands; see the module docstring."""

    def __init__(self, link: SessionLink, hub: Hub, runs: RunHistory, clients: ClientRegistry,
                 server_info: dict[str, Any], max_reply_bytes: int = 4 << 20) -> None:
        self.link = link
        self.hub = hub
        self.runs = runs
        self.clients = clients
        self.server_info = server_info
        self.max_reply_bytes = max_reply_bytes
        self.plans = None  # the plan service (liaison.plans.runner), given by the app: plan_* commands

    def start(self, caller: Caller, cmd: str, args: dict[str, Any]):
        """Begin a command; returns a result or an awaitable yielding it. Raises ProtocolError."""
        if cmd in WORKER_COMMANDS:
            return self.link.call(WORKER_COMMANDS[cmd], **args)
        if cmd.startswith("plan_") and self.plans is not None:
            return self.plans.handle(caller, cmd, args)
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}")
        return handler(caller, **args)

    async def snapshot(self) -> dict[str, Any]:
        """The session as a client that just connected should see it."""
        try:
            state = await self.link.call("state", 10)
        except Exception as exc:  # noqa: BLE001 - a snapshot without the worker still helps
            state = {"status": "unavailable", "error": str(exc)}
        state["last_seq"] = self.hub.last_seq
        state["runs"] = self.runs.list(50)
        state["server"] = {**self.server_info, "worker_restarts": self.link.restarts, "clients": len(self.clients)}
        if self.hub.storage_error is not None:
            state["storage_error"] = self.hub.storage_error
        return state

    # --- local ---------------------------------------------------------------------
    def cmd_ping(self, caller: Caller, **_: Any) -> dict[str, Any]:
        """Answer locally, without the worker: the server's time, newest ``seq`` and connected clients."""
        return {"pong": True, "time": time.time(), "last_seq": self.hub.last_seq, "clients": len(self.clients)}

    def cmd_clients(self, caller: Caller, **_: Any) -> list[dict[str, Any]]:
        """Authenticated connections, oldest first; ``you`` marks the asker's own."""
        return [{**c, "connected_since": c["connected_at"], "you": c["client_id"] == caller.client_id}
                for c in self.clients.list()]

    def cmd_subscribe(self, caller: Caller, topics: list[str]) -> dict[str, Any]:
        """Add ``topics`` to the caller's; returns all its topics. Raises ValueError for an unknown topic."""
        caller.subscriber.topics.update(Topic(t).value for t in topics)
        return {"topics": sorted(caller.subscriber.topics)}

    def cmd_unsubscribe(self, caller: Caller, topics: list[str]) -> dict[str, Any]:
        """Remove ``topics`` from the caller's; returns those left. Raises ValueError for an unknown topic."""
        caller.subscriber.topics.difference_update(Topic(t).value for t in topics)
        return {"topics": sorted(caller.subscriber.topics)}

    def cmd_replay(self, caller: Caller, since: int) -> RawResult:
        """One page of stored events after ``since`` in the caller's topics, bounded by ``REPLAY_LIMIT`` and bytes.

        ``more`` is true while events after ``next_since`` exist (of any topic); ``gap`` names
        events that exist nowhere any more. The stored texts are spliced into the reply as they
        are: parsing and re-serialising megabytes per page would hold the event loop (and every
        other client) for a tenth of a second each.
        """
        texts, gap, cursor = self.hub.replay_since(since, caller.subscriber.topics, limit=REPLAY_LIMIT,
                                                   max_bytes=self.max_reply_bytes)
        tail: dict[str, Any] = {"more": cursor < self.hub.last_seq, "next_since": cursor}
        if gap:
            tail["gap"] = {"from_seq": gap[0], "to_seq": gap[1]}
        return RawResult('{"events":[' + ",".join(texts) + "]," + json.dumps(tail, separators=(",", ":"))[1:])

    def cmd_list_runs(self, caller: Caller, limit: int = 50) -> list[dict[str, Any]]:
        """The ``limit`` most recent runs from the journal, newest first."""
        return self.runs.list(limit)

    def cmd_get_run(self, caller: Caller, run_id: str) -> dict[str, Any]:
        """One run's journal record; raises ProtocolError ``not_found`` for an unknown id."""
        record = self.runs.get(run_id)
        if record is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no run with id {run_id!r}")
        return record

    # --- worker ----------------------------------------------------------------------
    def cmd_state(self, caller: Caller, **_: Any):
        """An awaitable of :meth:`snapshot` (it never fails: without a worker the status is ``unavailable``)."""
        return self.snapshot()

    def cmd_run(self, caller: Caller, key: str, exp_info: dict | None = None, seed: int | None = None,
                simulate: dict | None = None):
        """Hand ``start_run`` to the worker; the awaitable yields ``run_id``, ``key`` and ``data_dir``.

        Raises ProtocolError ``storage_unavailable`` at once while the journal cannot be written.
        """
        if self.hub.storage_error is not None:
            raise ProtocolError(ErrorCode.STORAGE_UNAVAILABLE,
                                f"no run can start while the journal cannot be written ({self.hub.storage_error})")
        return self.link.call("start_run", key=key, exp_info=exp_info or {}, seed=seed, simulate=simulate)

    def cmd_set_exp_info(self, caller: Caller, values: dict[str, Any]):
        """Hand ``update_exp_info`` to the worker; the awaitable yields the whole expInfo after the change."""
        return self.link.call("update_exp_info", values=values)

    def cmd_add_experiment(self, caller: Caller, path: str, key: str | None = None):
        """An awaitable registering ``path`` in the worker and remembering it for restarted workers."""
        return self.link.add_experiment(path, key)

    def cmd_check_timing(self, caller: Caller, frames: int = 300):
        """Flip the session window ``frames`` times between runs and report its timing (slow timeout)."""
        return self.link.call("check_timing", SLOW_TIMEOUT, frames=frames)

    def cmd_setup_window(self, caller: Caller, **params: Any):
        """Hand the given (non-None) window parameters to the worker, with the slow timeout (a reopen takes seconds)."""
        changes = {k: v for k, v in params.items() if v is not None}
        return self.link.call("setup_window", SLOW_TIMEOUT, params=changes)

    async def cmd_trials(self, caller: Caller, n: int = 1, start: int = 0) -> dict[str, Any]:
        """``{current, future}``: the current trial and up to ``n`` after ``start``, asked of the worker at once.

        Raises what the worker raises (``conflict`` when nothing runs).
        """
        # both asked at once; gather consumes both answers even when one fails
        current, future = await asyncio.gather(self.link.call("current_trial"),
                                               self.link.call("future_trials", n=n, start=start))
        return {"current": current, "future": future}

    def cmd_list_available_devices(self, caller: Caller, device_class: str | None = None):
        """The device classes PsychoPy can find here and their available devices (slow: it probes hardware)."""
        return self.link.call("list_available_devices", SLOW_TIMEOUT, device_class=device_class)

    def cmd_setup_devices(self, caller: Caller, key: str):
        """Set up the devices experiment ``key`` declares, as its own ``setupDevices`` would."""
        return self.link.call("setup_devices", SLOW_TIMEOUT, key=key)

    def cmd_abort(self, caller: Caller, grace: float = 2.0):
        """An awaitable that stops the run and kills the worker if it has not ended after ``grace`` seconds."""
        return self.link.abort(grace)
