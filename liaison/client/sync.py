"""Blocking Python client: the async client on a private event-loop thread.

    with Client("ws://127.0.0.1:8765/", token="...") as client:
        run = client.run("stroop_lite", exp_info={"participant": "p01"})
        for event in client.events(timeout=60):
            print(event.event, event.data)
            if event.event in ("run_finished", "run_failed"):
                break

Every command is an explicit method with the same signature and result type
as :class:`~liaison.client.AsyncClient`'s; both share the protocol core
(:class:`liaison.protocol.client.ClientCore`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Iterator

from ..protocol.client import Event
from ..protocol.results import Aborted, ExperimentInfo, Pong, ReplayPage, RunRecord, State
from .aio import AsyncClient, AsyncRun


class Run:
    """A run started through :class:`Client`."""

    def __init__(self, inner: AsyncRun, client: Client) -> None:
        self._inner = inner
        self._client = client
        self.run_id = inner.run_id
        self.key = inner.key

    @property
    def events(self) -> list[Event]:
        """The run's events received so far, in order."""
        return self._inner.events

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The run's data rows received so far."""
        return self._inner.rows

    def wait(self, timeout: float | None = None) -> Event:
        """Block until the run ends; returns its ``run_finished``/``run_failed`` event."""
        return self._client._call(self._inner.wait(timeout), None if timeout is None else timeout + 5)

    def pause(self) -> Any:
        """Block until the session's running experiment is paused (it need not be this run any more)."""
        return self._client.pause()

    def resume(self) -> Any:
        """Block until the session's paused experiment resumes (it need not be this run any more)."""
        return self._client.resume()

    def stop(self) -> Any:
        """Block until the session's running experiment is told to end (it need not be this run any more)."""
        return self._client.stop()

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, key={self.key!r})"


class Client:
    """A blocking connection to one server; see :class:`~liaison.client.AsyncClient` for the options."""

    def __init__(self, url: str = "ws://127.0.0.1:8765/", token: str | None = None, *,
                 role: str = "controller", name: str | None = None, reconnect: bool = True,
                 since: int | None = None, timeout: float = 30.0, reconnect_for: float = 120.0,
                 fingerprint: str | None = None, ca_file: str | None = None, connector=None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="liaison-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(url, token, role=role, name=name, reconnect=reconnect, since=since,
                                  timeout=timeout, reconnect_for=reconnect_for, fingerprint=fingerprint,
                                  ca_file=ca_file, connector=connector)
        self._events: queue.SimpleQueue | None = None

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- lifecycle -----------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Connect and authenticate; returns the welcome (with a state snapshot)."""
        try:
            welcome = self._call(self._async.connect())
        except BaseException:
            self._shutdown_loop()
            raise
        self._events = queue.SimpleQueue()
        self._call(self._start_event_pump())
        return welcome

    async def _start_event_pump(self) -> None:
        async def pump() -> None:
            async for event in self._async.events():
                self._events.put(event)
            self._events.put(None)

        asyncio.get_running_loop().create_task(pump())

    def close(self) -> None:
        """Close the connection and the client's thread."""
        try:
            self._call(self._async.close(), 10)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def welcome(self) -> dict[str, Any] | None:
        """The last ``welcome`` message (role, state snapshot, replay kind), or None before connecting."""
        return self._async.welcome

    @property
    def last_seq(self) -> int | None:
        """``seq`` of the newest event received (a reconnect asks for everything after it), or None."""
        return self._async.last_seq

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events as they arrive; stops after ``timeout`` s without one, or when the client closes."""
        while True:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                return
            if event is None:
                return
            yield event

    # --- commands (one per protocol command; see AsyncClient for each one's contract) ------
    def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send any command and return its plain JSON result, or raise the matching LiaisonError.

        Blocking :meth:`AsyncClient.request`: ConnectionLost or TimeoutError leave it unknown
        whether the command ran.
        """
        return self._call(self._async.request(cmd, timeout, **args))

    def ping(self) -> Pong:
        """Block for a round trip to the server (not the worker); returns its time and newest ``seq``."""
        return self._call(self._async.ping())

    def state(self) -> State:
        """Block for the session's state now (status, experiments, runs, server info)."""
        return self._call(self._async.state())

    def list_experiments(self) -> list[ExperimentInfo]:
        """Block for the experiments the session can run."""
        return self._call(self._async.list_experiments())

    def add_experiment(self, path: str, key: str | None = None) -> ExperimentInfo:
        """Block until an experiment file under the session root is registered (it may compile: up to 180 s).

        Raises NotFound, Forbidden (outside the root) or ExperimentFailed.
        """
        return self._call(self._async.add_experiment(path, key))

    def run(self, key: str, exp_info: dict[str, Any] | None = None, seed: int | None = None,
            simulate: dict[str, Any] | bool | None = None) -> Run:
        """Block until the server accepts a run of ``key``; its events collect on the returned :class:`Run`.

        ``simulate`` (a policy dict, or True for the defaults) makes it a dry run. Raises NotFound,
        Busy (another run is on) or StorageUnavailable.
        """
        return Run(self._call(self._async.run(key, exp_info, seed, simulate)), self)

    def pause(self) -> Any:
        """Block until the running experiment has paused at its next frame; raises Conflict if none runs."""
        return self._call(self._async.pause())

    def resume(self) -> Any:
        """Block until the paused experiment has resumed; raises Conflict if it is not paused."""
        return self._call(self._async.resume())

    def stop(self) -> Any:
        """Block until the running experiment is told to end at its next frame (its data are saved).

        Raises Conflict if none runs or it is already stopping.
        """
        return self._call(self._async.stop())

    def abort(self, grace: float = 2.0) -> Aborted:
        """Block until the run is stopped, the worker killed if it has not ended after ``grace`` seconds."""
        return self._call(self._async.abort(grace))

    def get_exp_info(self) -> dict[str, Any]:
        """Block for the running run's expInfo, or the session's defaults between runs."""
        return self._call(self._async.get_exp_info())

    def set_exp_info(self, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """Block until expInfo values are changed (live in the running run, else for the next ones); returns them all."""
        return self._call(self._async.set_exp_info(values, **more))

    def add_data(self, name: str, value: Any) -> Any:
        """Block until ``value`` is added to the running run's current data row; raises Conflict if none runs."""
        return self._call(self._async.add_data(name, value))

    def annotate(self, text: str) -> Any:
        """Block until ``text`` is noted in the run's log and current row (or the session log between runs)."""
        return self._call(self._async.annotate(text))

    def trials(self, n: int = 1, start: int = 0) -> dict[str, Any]:
        """Block for ``{current, future}``: the current trial and up to ``n`` upcoming ones after ``start``."""
        return self._call(self._async.trials(n, start))

    def skip_trials(self, n: int = 1) -> Any:
        """Block until the next ``n`` trials of the running loop are skipped."""
        return self._call(self._async.skip_trials(n))

    def rewind_trials(self, n: int = 1) -> Any:
        """Block until the running loop has gone back ``n`` trials."""
        return self._call(self._async.rewind_trials(n))

    def setup_window(self, **params: Any) -> dict[str, Any]:
        """Block until the session window has the given parameters (may reopen it: up to 180 s).

        Meant for between runs: during one the change waits for the run's end, so the reply
        may time out as Busy and the change still happen afterwards.
        """
        return self._call(self._async.setup_window(**params))

    def subscribe(self, *topics: str) -> Any:
        """Block until these event topics are added to this connection's; returns the topics now received."""
        return self._call(self._async.subscribe(*topics))

    def unsubscribe(self, *topics: str) -> Any:
        """Block until these event topics are removed from this connection's; returns those left."""
        return self._call(self._async.unsubscribe(*topics))

    def replay(self, since: int) -> ReplayPage:
        """Block for one page of stored events after ``since`` (ask again from ``next_since`` while ``more``)."""
        return self._call(self._async.replay(since))

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Block for the ``limit`` most recent runs, newest first."""
        return self._call(self._async.list_runs(limit))

    # devices (see README "Devices") ------------------------------------------------------
    def list_devices(self) -> list[dict[str, Any]]:
        """The session's named devices (blocking :meth:`AsyncClient.list_devices`)."""
        return self._call(self._async.list_devices())

    def list_available_devices(self, device_class: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """What PsychoPy's DeviceManager finds, by class (blocking :meth:`AsyncClient.list_available_devices`)."""
        return self._call(self._async.list_available_devices(device_class))

    def add_device(self, name: str, device_class: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add a named device the session keeps across runs (blocking :meth:`AsyncClient.add_device`)."""
        return self._call(self._async.add_device(name, device_class, params))

    def remove_device(self, name: str) -> bool:
        """Remove a named device (blocking :meth:`AsyncClient.remove_device`)."""
        return self._call(self._async.remove_device(name))

    def setup_devices(self, key: str) -> list[str]:
        """Set up the devices experiment ``key`` declares (blocking :meth:`AsyncClient.setup_devices`)."""
        return self._call(self._async.setup_devices(key))

    def get_run(self, run_id: str) -> RunRecord:
        """Block for one run's record; raises NotFound for an unknown ``run_id``."""
        return self._call(self._async.get_run(run_id))

    # session plans (see README "Session plans") -----------------------------------------
    def plan_start(self, toml: str | None = None, *, plan: dict[str, Any] | None = None,
                   simulate: dict[str, Any] | bool | None = None) -> dict[str, Any]:
        """Start a session plan from its TOML text (or a dict); ``simulate`` dry-runs every run."""
        return self._call(self._async.plan_start(toml, plan=plan, simulate=simulate))

    def plan_state(self) -> dict[str, Any]:
        """The plan's state: status, cursor, steps, per-participant progress."""
        return self._call(self._async.plan_state())

    def plan_pause(self) -> dict[str, Any]:
        """Pause the plan after the run in progress."""
        return self._call(self._async.plan_pause())

    def plan_continue(self) -> dict[str, Any]:
        """Continue a paused plan (or one waiting at a break)."""
        return self._call(self._async.plan_continue())

    def plan_skip(self) -> dict[str, Any]:
        """Skip the plan's current step."""
        return self._call(self._async.plan_skip())

    def plan_cancel(self) -> dict[str, Any]:
        """Cancel the plan (the run in progress is stopped)."""
        return self._call(self._async.plan_cancel())
