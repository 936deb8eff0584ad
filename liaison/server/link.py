"""The server's handle on the session worker: commands as awaitables, and what outlives a worker.

The :class:`~session.worker.WorkerHost` owns the worker process (start,
restart after a crash, abort, kill). This adds what only the server knows:
experiments clients added (re-added to every fresh worker and server),
session params kept in the journal, and the rebuilding of a run the worker
died under from the rows the journal holds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from session.events import Event, Publisher, RunRecovered, StatusChanged
from session.worker import WorkerConfig, WorkerDied, WorkerError, WorkerHost

from ..protocol import ErrorCode, ProtocolError, error_code_for
from ..store.journal import Journal
from ..store.recovery import rebuild_run

log = logging.getLogger("liaison.server")

# Seconds to wait for the worker's reply; frame-synchronous commands take one frame.
DEFAULT_TIMEOUT = 30.0
SLOW_TIMEOUT = 180.0
RESTART_WAIT = 120.0  # how long a command waits for a worker that is being restarted


def error_from_worker(exc: BaseException, request_id: Any = None) -> ProtocolError:
    """The protocol error a client sees for a failed worker command."""
    if isinstance(exc, ProtocolError):
        exc.request_id = request_id
        return exc
    if isinstance(exc, WorkerError):
        details = exc.details.get("details") if isinstance(exc.details, dict) else None  # e.g. a run's problems
        return ProtocolError(error_code_for(exc.code), str(exc), details, request_id=request_id)
    if isinstance(exc, WorkerDied):
        return ProtocolError(ErrorCode.INTERNAL, f"the session worker is not available: {exc}",
                             request_id=request_id)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ProtocolError(ErrorCode.BUSY, "the session did not answer in time (is the experiment "
                             "between frames for long?)", request_id=request_id)
    return ProtocolError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", request_id=request_id)


def reply_future(host: WorkerHost, method: str, timeout: float, **kwargs: Any) -> asyncio.Future:
    """Send a worker command; its answer as an asyncio future of the running loop.

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


class SessionLink:
    """Commands to the worker from the event loop, and the state the server keeps for it."""

    def __init__(self, config: WorkerConfig, journal: Journal, publisher: Publisher,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.journal = journal
        self.publisher = publisher
        self.loop = loop
        self.host = WorkerHost(config, publisher=publisher, on_exit=self._exited, on_start=self._restore,
                               loop=loop, supervise=True)
        self.on_worker_start: list = []  # callables(host), after every (re)start

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self, timeout: float = 180) -> dict[str, Any]:
        """Start the worker (its window opens) and give it what earlier workers had."""
        return await self.loop.run_in_executor(None, lambda: self.host.start(timeout=timeout))

    async def shutdown(self, timeout: float = 60) -> None:
        """Stop any run (its data are saved) and end the worker for good."""
        await self.loop.run_in_executor(None, lambda: self.host.shutdown(timeout=timeout))

    @property
    def restarts(self) -> int:
        """How many times the worker has been restarted (after a crash or an abort)."""
        return self.host.restarts

    def _exited(self, code: int | None) -> None:
        log.error("session worker exited unexpectedly (code %s); restarting it", code)

    def _restore(self, host: WorkerHost) -> None:
        """Give every fresh worker the experiments clients added to the ones before it."""
        for callback in self.on_worker_start:
            callback(host)
        for entry in self.journal.get_state("added_experiments", []):
            try:
                host.request("add_experiment", timeout=120, path=entry["path"], key=entry["key"])
            except Exception as exc:  # noqa: BLE001 - a file may have gone since
                log.warning("could not re-add experiment %s: %s", entry["path"], exc)

    # --- commands -----------------------------------------------------------------------
    def call(self, method: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any):
        """The worker's answer as an awaitable (loop thread); sent now, in the order calls are made."""
        host = self.host
        if host.alive or not host.restarting:
            return reply_future(host, method, timeout, **kwargs)
        return self._after_restart(method, timeout, kwargs)

    async def _after_restart(self, method: str, timeout: float, kwargs: dict[str, Any]):
        """The worker is being replaced (it died, or an abort killed it): wait for the new one."""
        if not await self.loop.run_in_executor(None, self.host.wait_up, RESTART_WAIT):
            raise ProtocolError(ErrorCode.BUSY, "the session worker is restarting and not back yet; try again")
        return await reply_future(self.host, method, timeout, **kwargs)

    async def abort(self, grace: float) -> dict[str, Any]:
        """Stop the run, killing the worker if it has not ended after ``grace`` seconds."""
        try:
            return await self.loop.run_in_executor(None, lambda: self.host.abort(grace=grace))
        except WorkerError as exc:
            raise error_from_worker(exc) from exc

    async def add_experiment(self, path: str, key: str | None) -> dict[str, Any]:
        """Register an experiment and remember it, so restarted workers and servers have it too."""
        result = await self.call("add_experiment", SLOW_TIMEOUT, path=path, key=key)
        added = [e for e in self.journal.get_state("added_experiments", []) if e["path"] != path]
        self.journal.set_state("added_experiments", added + [{"path": path, "key": key}])
        return result

    # --- events (hub listener, loop thread, after the event is journalled) --------------------
    def on_event(self, event: Event) -> None:
        """Keep what must outlive the worker (loop thread, after the event is journalled).

        Session-wide expInfo changes are saved for the next worker; the end of a run the
        worker died under starts rebuilding its data from the journal, in an executor.
        """
        if event.type == "exp_info_changed" and event.run_id is None:
            self.journal.set_state("params", event.exp_info)
        elif event.type in ("run_finished", "run_failed") and event.run_id in self.host.lost_runs:
            reason = self.host.lost_runs.pop(event.run_id)
            self.loop.run_in_executor(None, self._rebuild_lost_run, event.run_id, reason)

    def _rebuild_lost_run(self, run_id: str, reason: str) -> None:
        """The worker died under this run: its journalled rows become its CSV."""
        run = self.journal.run(run_id)
        if run is None:
            return
        try:
            done = rebuild_run(self.journal, run, reason=reason)
        except Exception:  # noqa: BLE001
            log.exception("could not rebuild the data of run %s", run_id)
            return
        log.warning("run %s: rebuilt %d rows from the journal into %s", run_id, done["rows"], done["csv"])
        self.publisher.publish(RunRecovered(run_id=run_id, key=run["key"], rows=done["rows"],
                                            data_files=done["data_files"], reason=reason))

    def unavailable(self) -> None:
        """Tell clients the session cannot take commands (e.g. its storage failed)."""
        self.publisher.publish(StatusChanged(status="unavailable"))
