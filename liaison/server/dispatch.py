"""Turn validated requests into work: worker commands or local answers.

``start`` is synchronous on purpose: it hands the command to the worker in
the order requests arrived (pause before resume, always), and returns either
a plain result or an awaitable for the reply.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from session.worker import WorkerDied, WorkerError

from ..protocol import ErrorCode, ProtocolError, Topic

if TYPE_CHECKING:
    from .app import LiaisonServer
    from .connection import ClientConnection

# Seconds to wait for the worker's reply; frame-synchronous commands take one frame.
DEFAULT_TIMEOUT = 30.0
SLOW_TIMEOUT = 180.0
RESTART_WAIT = 120.0  # how long a command waits for a worker that is being restarted

# Commands that map one-to-one onto a worker method: cmd -> (method, args rename).
WORKER_COMMANDS: dict[str, str] = {
    "list_experiments": "list_experiments",
    "pause": "pause",
    "resume": "resume",
    "stop": "stop",
    "get_exp_info": "get_exp_info",
    "add_data": "add_data",
    "annotate": "annotate",
    "skip_trials": "skip_trials",
    "rewind_trials": "rewind_trials",
}


def error_from_worker(exc: BaseException, request_id) -> ProtocolError:
    if isinstance(exc, WorkerError):
        code = exc.code if exc.code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL.value
        return ProtocolError(ErrorCode(code), str(exc), request_id=request_id)
    if isinstance(exc, WorkerDied):
        return ProtocolError(ErrorCode.INTERNAL, f"the session worker is not available: {exc}",
                             request_id=request_id)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ProtocolError(ErrorCode.BUSY, "the session did not answer in time (is the experiment "
                             "between frames for long?)", request_id=request_id)
    return ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", request_id=request_id)


def worker_reply(host, method: str, timeout: float, **kwargs: Any) -> asyncio.Future:
    """Send a worker command; its answer as an asyncio future of this loop.

    The host reads the worker's replies on this loop's thread, so the answer
    is set right there: no thread-safe hand-over and no extra task (as
    ``wait_for(wrap_future(...))`` would add), one loop turn from reply to send.
    """
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    answer = loop.create_future()

    def settle(done: Future) -> None:
        if answer.done():
            return
        if done.cancelled():
            answer.cancel()
        elif done.exception() is not None:
            answer.set_exception(done.exception())
        else:
            answer.set_result(done.result())

    def on_done(done: Future) -> None:
        if threading.get_ident() == loop_thread:
            settle(done)
        else:
            loop.call_soon_threadsafe(settle, done)

    timer = loop.call_later(timeout, lambda: answer.done() or answer.set_exception(TimeoutError()))
    answer.add_done_callback(lambda _: timer.cancel())
    host.submit(method, **kwargs).add_done_callback(on_done)
    return answer


class Dispatcher:
    def __init__(self, server: "LiaisonServer") -> None:
        self.server = server

    def _worker(self, method: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any):
        host = self.server.host
        if host.alive or not host.restarting:  # submit now, in arrival order
            return worker_reply(host, method, timeout, **kwargs)
        return self._after_restart(method, timeout, kwargs)

    async def _after_restart(self, method: str, timeout: float, kwargs: dict[str, Any]):
        """The worker is being replaced (it died, or an abort killed it): wait for the new one."""
        host = self.server.host
        if not await asyncio.get_running_loop().run_in_executor(None, host.wait_up, RESTART_WAIT):
            raise ProtocolError(ErrorCode.BUSY, "the session worker is restarting and not back yet; try again")
        return await worker_reply(host, method, timeout, **kwargs)

    def start(self, conn: "ClientConnection", cmd: str, args: dict[str, Any]):
        """Begin a command; returns a result or an awaitable yielding it."""
        if cmd in WORKER_COMMANDS:
            return self._worker(WORKER_COMMANDS[cmd], **args)
        if cmd.startswith("plan_"):
            return self.server.plans.handle(conn, cmd, args)
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}")
        return handler(conn, **args)

    # --- local ---------------------------------------------------------------------
    def cmd_ping(self, conn, **_: Any) -> dict[str, Any]:
        return {"pong": True, "time": time.time(), "last_seq": self.server.hub.last_seq}

    def cmd_subscribe(self, conn, topics: list[str]) -> dict[str, Any]:
        conn.subscriber.topics.update(Topic(t).value for t in topics)
        return {"topics": sorted(conn.subscriber.topics)}

    def cmd_unsubscribe(self, conn, topics: list[str]) -> dict[str, Any]:
        conn.subscriber.topics.difference_update(Topic(t).value for t in topics)
        return {"topics": sorted(conn.subscriber.topics)}

    def cmd_replay(self, conn, since: int) -> dict[str, Any]:
        texts, gap, more = self.server.hub.replay_since(since, conn.subscriber.topics, limit=10_000)
        result: dict[str, Any] = {"events": [json.loads(t) for t in texts], "more": more}
        if gap:
            result["gap"] = {"from_seq": gap[0], "to_seq": gap[1]}
        return result

    def cmd_list_runs(self, conn, limit: int = 50) -> list[dict[str, Any]]:
        return self.server.runs.list(limit)

    def cmd_get_run(self, conn, run_id: str) -> dict[str, Any]:
        record = self.server.runs.get(run_id)
        if record is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no run with id {run_id!r}")
        return record

    # --- worker ----------------------------------------------------------------------
    async def cmd_state(self, conn, **_: Any) -> dict[str, Any]:
        return await self.server.snapshot()

    def cmd_run(self, conn, key: str, exp_info: dict | None = None, seed: int | None = None,
                simulate: dict | None = None):
        return self._worker("start_run", key=key, exp_info=exp_info or {}, seed=seed, simulate=simulate)

    def cmd_set_exp_info(self, conn, values: dict[str, Any]):
        return self._worker("update_exp_info", values=values)

    async def cmd_add_experiment(self, conn, path: str, key: str | None = None):
        result = await self._worker("add_experiment", SLOW_TIMEOUT, path=path, key=key)
        self.server.remember_experiment(path, key)  # so restarted workers and servers have it too
        return result

    def cmd_setup_window(self, conn, **params: Any):
        changes = {k: v for k, v in params.items() if v is not None}
        return self._worker("setup_window", SLOW_TIMEOUT, params=changes)

    async def cmd_trials(self, conn, n: int = 1, start: int = 0) -> dict[str, Any]:
        # both asked at once; gather consumes both answers even when one fails
        current, future = await asyncio.gather(self._worker("current_trial"),
                                               self._worker("future_trials", n=n, start=start))
        return {"current": current, "future": future}

    async def cmd_abort(self, conn, grace: float = 2.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lambda: self.server.host.abort(grace=grace))
        except WorkerError as exc:
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from exc
