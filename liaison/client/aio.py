"""Async Python client for a liaison server.

    async with AsyncClient("ws://127.0.0.1:8765/", token="...") as client:
        run = await client.run("stroop_lite", exp_info={"participant": "p01"})
        async for event in client.events():
            ...
        outcome = await run.wait()

The protocol itself (handshake, request ids, replies, which events are new,
whether to reconnect) is :class:`liaison.protocol.client.ClientCore`, shared
with the blocking :class:`~liaison.client.Client`; this module adds the
socket. If the connection drops the client reconnects and asks for
everything since the last event it saw, so the event stream it hands you has
no gaps and no duplicates; if the server no longer has some events, you get
a ``gap`` event saying which.

Reconnecting is a small loop of its own rather than websockets'
``async for ws in connect(...)``: that iterator waits a random 0–5 s before
its first retry and at least 3.1 s between later ones (tunable only through
process-wide environment variables) and never gives up by itself. A booth's
server restarts in a few seconds; this loop retries after 0.1 s, doubling to
at most 1 s, so a client is back within a second of the server, and it stops
after ``reconnect_for`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..protocol import ProtocolError
from ..protocol.client import END_EVENTS, ClientCore, Event, Refused, Reply, Welcome
from ..protocol.results import Aborted, ExperimentInfo, Pong, ReplayPage, RunAccepted, RunRecord, State
from .errors import ConnectionLost, LiaisonError, RequestTimeout, Unauthorized, error_from_body
from .tls import client_context, explain_connect_error

log = logging.getLogger("liaison.client")
BACKLOG = 10_000  # events kept for the first events() consumer, from connect on
MAX_RUNS = 20  # runs whose events the client keeps (AsyncRun.events / rows)
RETRY_FIRST, RETRY_MAX = 0.1, 1.0  # seconds between reconnection attempts


@dataclass
class AsyncRun:
    """A run started by this client; events for it accumulate as they arrive."""

    run_id: str
    key: str
    client: AsyncClient = field(repr=False)

    @property
    def events(self) -> list[Event]:
        """The run's events received so far, in order."""
        return list(self.client._run_events.get(self.run_id, []))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The run's data rows received so far."""
        return [row for e in self.events if e.event == "data_rows" for row in e.data["rows"]]

    async def wait(self, timeout: float | None = None) -> Event:
        """Wait for the run's final event (``run_finished`` or ``run_failed``)."""
        return await asyncio.wait_for(asyncio.shield(self.client._run_end(self.run_id)), timeout)

    async def pause(self) -> Any:
        """Pause the session's running experiment (``AsyncClient.pause``); it need not be this run any more."""
        return await self.client.pause()

    async def resume(self) -> Any:
        """Resume the session's paused experiment (``AsyncClient.resume``); it need not be this run any more."""
        return await self.client.resume()

    async def stop(self) -> Any:
        """Stop the session's running experiment (``AsyncClient.stop``); it need not be this run any more."""
        return await self.client.stop()


class AsyncClient:
    """A connection to one server: typed commands, an ordered event stream, automatic reconnects.

    ``role`` is ``controller`` or ``observer``; ``since`` replays events after
    that ``seq`` first; ``timeout`` bounds connecting and each reply;
    ``reconnect_for`` bounds how long a dropped connection is retried.
    ``fingerprint`` (the SHA-256 of the server's certificate, as ``liaison serve``
    prints it) pins a ``wss://`` server; ``ca_file`` trusts a CA (or the
    certificate itself) instead. ``connector`` replaces websockets' ``connect``
    (tests: an in-memory transport).
    """

    def __init__(self, url: str = "ws://127.0.0.1:8765/", token: str | None = None, *,
                 role: str = "controller", name: str | None = None, reconnect: bool = True,
                 since: int | None = None, timeout: float = 30.0, reconnect_for: float = 120.0,
                 fingerprint: str | None = None, ca_file: str | None = None, connector=None) -> None:
        self.url = url
        self.ssl = client_context(url, fingerprint, ca_file)  # wss://: pinned, CA file or system trust
        self._connector = connector or connect
        self.core = ClientCore(token, role=role, name=name or "liaison-python", last_seq=since)
        self.reconnect = reconnect
        self.timeout = timeout
        self.reconnect_for = reconnect_for
        self._ws = None
        self._gate: asyncio.Event | None = None  # cleared: stop reading frames (subclasses' backpressure)
        self._pending: dict[Any, asyncio.Future] = {}
        self._queues: list[asyncio.Queue] = []
        # Events that arrive before anyone iterates events() (the replay comes
        # right after the welcome) wait here for the first consumer.
        self._backlog: collections.deque | None = collections.deque(maxlen=BACKLOG)
        self._ended = False
        # The events of the most recent runs (MAX_RUNS of them), so a long-lived client stays bounded.
        self._run_events: collections.OrderedDict[str, list[Event]] = collections.OrderedDict()
        self._run_waiters: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._closed = False
        self._connected = asyncio.Event()

    # --- what the protocol core knows ------------------------------------------------------
    @property
    def last_seq(self) -> int | None:
        """``seq`` of the newest event received (a reconnect asks for everything after it)."""
        return self.core.last_seq

    @property
    def welcome(self) -> dict[str, Any] | None:
        """The last ``welcome`` message (role, state snapshot, replay kind), or None before the first one."""
        return self.core.welcome

    @property
    def hello(self) -> dict[str, Any] | None:
        """The last ``hello`` the server sent (its version and limits), or None before connecting."""
        return self.core.hello

    @property
    def goodbye(self) -> dict[str, Any] | None:
        """``{code, reason}`` of the last ``goodbye`` (why the server closed on purpose), else None.

        Reset on each new connection.
        """
        goodbye = self.core.goodbye
        return None if goodbye is None else {"code": goodbye.code, "reason": goodbye.reason}

    # --- connection -------------------------------------------------------------------
    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Connect and authenticate; returns the welcome (with a state snapshot)."""
        await self._open()
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        return self.welcome

    async def _open(self) -> None:
        core = self.core
        try:
            ws = await self._connector(self.url, max_size=None, open_timeout=self.timeout, compression=None,
                                       ping_interval=20, ssl=self.ssl)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode(errors="replace").strip()
            if status == 403:
                raise LiaisonError(f"server refused the connection: {body}", code="forbidden") from exc
            raise LiaisonError(f"server answered HTTP {status}: {body}", code="connection_lost") from exc
        except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectionLost(explain_connect_error(self.url, exc)) from exc
        core.connecting()
        try:
            core.receive(await asyncio.wait_for(ws.recv(), self.timeout))  # hello
            await ws.send(core.auth_text())
            answer = core.receive(await asyncio.wait_for(ws.recv(), self.timeout))
        except ConnectionClosed as exc:
            raise Unauthorized(f"the server closed the connection during authentication: {exc}") from exc
        except ProtocolError as exc:
            await ws.close()
            raise LiaisonError(f"the server does not speak the protocol: {exc.message}",
                               code="invalid_message") from exc
        if answer and isinstance(answer[0], Refused):
            await ws.close()
            raise error_from_body(answer[0].error)
        if not answer or not isinstance(answer[0], Welcome):
            await ws.close()
            raise LiaisonError("the server did not welcome this client", code="invalid_message")
        self._ws = ws
        self._connected.set()

    async def close(self) -> None:
        """Close the connection for good (pending requests fail with ConnectionLost)."""
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing regardless
                pass
        if self._ws is not None:
            await self._ws.close()
        self._fail_pending(ConnectionLost("client closed"))
        self._end_streams()

    def _end_streams(self) -> None:
        self._ended = True
        for queue in self._queues:
            queue.put_nowait(None)

    def _fail_pending(self, exc: LiaisonError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    async def _read_forever(self) -> None:
        while True:
            try:
                async for raw in self._ws:
                    gate = self._gate
                    if gate is not None and not gate.is_set():
                        await gate.wait()  # held: websockets and TCP push back on the server meanwhile
                    self._on_frame(raw)
            except ConnectionClosed:
                pass
            except ProtocolError as exc:
                log.error("dropping the connection: %s", exc.message)
                await self._ws.close()
            self._connected.clear()
            _, worth_retrying = self.core.connection_lost()
            self._fail_pending(ConnectionLost("connection lost before the reply arrived"))
            if self._closed or not self.reconnect or not worth_retrying or not await self._reconnect():
                self._end_streams()
                return

    async def _reconnect(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_for
        delay = RETRY_FIRST
        while not self._closed and loop.time() < deadline:
            try:
                await self._open()
                log.info("reconnected to %s (since seq %s)", self.url, self.last_seq)
                return True
            except Unauthorized:
                return False
            except (LiaisonError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        return False

    # --- incoming --------------------------------------------------------------------------
    def _on_frame(self, raw: str | bytes) -> None:
        for item in self.core.receive(raw):
            if isinstance(item, Reply):
                future = self._pending.pop(item.id, None)
                if future is not None and not future.done():
                    if item.ok:
                        future.set_result(item.result)
                    else:
                        future.set_exception(error_from_body(item.error))
            elif isinstance(item, Event):
                self._on_event(item)

    def _on_event(self, event: Event) -> None:
        run_id = event.run_id if event.event not in ("gap", "alert") else None
        if run_id is not None:
            events = self._run_events.get(run_id)
            if events is None:
                events = self._run_events[run_id] = []
                while len(self._run_events) > MAX_RUNS:
                    old, _ = self._run_events.popitem(last=False)
                    self._run_waiters.pop(old, None)
            events.append(event)
            if event.event in END_EVENTS:
                waiter = self._run_waiters.get(run_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
        if self._backlog is not None:
            self._backlog.append(event)
        for queue in self._queues:
            queue.put_nowait(event)

    def _run_end(self, run_id: str) -> asyncio.Future:
        waiter = self._run_waiters.get(run_id)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._run_waiters[run_id] = waiter
            for event in self._run_events.get(run_id, []):
                if event.event in END_EVENTS:
                    waiter.set_result(event)
        return waiter

    async def events(self) -> AsyncIterator[Event]:
        """Events in order, with those replayed after reconnects.

        The first iterator also gets what arrived since :meth:`connect` (up to
        ``BACKLOG`` events), so the replay asked for with ``since`` is never
        missed; later iterators start from the moment they start.
        """
        queue: asyncio.Queue = asyncio.Queue()
        if self._backlog is not None:
            for event in self._backlog:
                queue.put_nowait(event)
            self._backlog = None
        if self._ended:
            queue.put_nowait(None)
        self._queues.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._queues.remove(queue)

    # --- requests ------------------------------------------------------------------------------
    async def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Send a command and return its result (plain JSON), or raise the matching LiaisonError.

        Waits for a connection (while reconnecting) and for the reply, each up to ``timeout``
        (default: the client's). Raises ConnectionLost if the client is closed or the connection
        drops first, and RequestTimeout (also a TimeoutError) when no reply comes in time:
        either way the command may or may not have run.
        """
        if self._closed:
            raise ConnectionLost("client is closed")
        if not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), self.timeout if timeout is None else timeout)
            except (asyncio.TimeoutError, TimeoutError):
                raise RequestTimeout(f"not connected to {self.url}; {cmd} was not sent") from None
        try:
            request_id, text = self.core.request_text(cmd, args)
        except ProtocolError as exc:
            raise error_from_body({"code": exc.code.value, "message": exc.message, "details": exc.details}) from None
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise ConnectionLost(f"connection lost while sending {cmd}") from exc
        try:
            return await asyncio.wait_for(future, self.timeout if timeout is None else timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"no reply to {cmd} within {self.timeout if timeout is None else timeout:g} s "
                                 "(it may still have been carried out)") from None
        finally:
            self._pending.pop(request_id, None)
            self.core.pending.discard(request_id)

    async def ping(self) -> Pong:
        """Round trip to the server (not the worker): its time and newest ``seq``."""
        return Pong.model_validate(await self.request("ping"))

    async def state(self) -> State:
        """The session's state now (status, current run, experiments, window, recent runs, server info)."""
        return State.model_validate(await self.request("state"))

    async def list_experiments(self) -> list[ExperimentInfo]:
        """The experiments the session can run: key, path, kind and expInfo defaults."""
        return [ExperimentInfo.model_validate(e) for e in await self.request("list_experiments")]

    async def add_experiment(self, path: str, key: str | None = None) -> ExperimentInfo:
        """Register an experiment file under the session root (it may compile: up to 180 s).

        Raises NotFound, Forbidden (outside the root) or ExperimentFailed.
        """
        return ExperimentInfo.model_validate(await self.request("add_experiment", timeout=180, path=path, key=key))

    async def run(self, key: str, exp_info: dict[str, Any] | None = None, seed: int | None = None,
                  simulate: dict[str, Any] | bool | None = None) -> AsyncRun:
        """Start a run of ``key``; its events collect on the returned :class:`AsyncRun`.

        ``simulate`` (a policy dict, or True for the defaults) makes it a dry run: a simulated
        participant answers. Raises NotFound, Busy (another run is on) or StorageUnavailable.
        """
        args: dict[str, Any] = {"key": key, "exp_info": exp_info, "seed": seed}
        if simulate:
            args["simulate"] = {} if simulate is True else dict(simulate)
        accepted = RunAccepted.model_validate(await self.request("run", **args))
        return AsyncRun(accepted.run_id, accepted.key, self)

    async def pause(self) -> Any:
        """Pause the running experiment at its next frame; raises Conflict if none runs."""
        return await self.request("pause")

    async def resume(self) -> Any:
        """Resume the paused experiment; raises Conflict if it is not paused."""
        return await self.request("resume")

    async def stop(self) -> Any:
        """Tell the running experiment to end at its next frame (its data are saved).

        Raises Conflict if none runs or it is already stopping.
        """
        return await self.request("stop")

    async def abort(self, grace: float = 2.0) -> Aborted:
        """Stop the run, killing the worker if it has not ended after ``grace`` seconds.

        Raises Conflict if no run is on.
        """
        return Aborted.model_validate(await self.request("abort", timeout=grace + 180, grace=grace))

    async def get_exp_info(self) -> dict[str, Any]:
        """The running run's expInfo, or the session's defaults between runs."""
        return await self.request("get_exp_info")

    async def set_exp_info(self, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """Change expInfo values (live in the running run, else for the next ones); returns them all."""
        return await self.request("set_exp_info", values={**(values or {}), **more})

    async def add_data(self, name: str, value: Any) -> Any:
        """Add ``value`` to the running run's current data row; raises Conflict if none runs."""
        return await self.request("add_data", name=name, value=value)

    async def annotate(self, text: str) -> Any:
        """Note ``text`` in the run's log and current row (or the session log between runs)."""
        return await self.request("annotate", text=text)

    async def trials(self, n: int = 1, start: int = 0) -> dict[str, Any]:
        """``{current, future}``: the current trial and up to ``n`` upcoming ones after ``start``.

        Raises Conflict if no run is on.
        """
        return await self.request("trials", n=n, start=start)

    async def skip_trials(self, n: int = 1) -> Any:
        """Skip the next ``n`` trials of the running loop."""
        return await self.request("skip_trials", n=n)

    async def rewind_trials(self, n: int = 1) -> Any:
        """Go back ``n`` trials in the running loop."""
        return await self.request("rewind_trials", n=n)

    async def setup_window(self, **params: Any) -> dict[str, Any]:
        """Change the session window (may reopen it: up to 180 s); returns its description.

        Meant for between runs: during one the change waits for the run's end (the window's
        thread is the experiment's), so the reply may time out as Busy and the change still
        happen afterwards.
        """
        return await self.request("setup_window", timeout=180, **params)

    async def subscribe(self, *topics: str) -> Any:
        """Receive these event topics too; returns the topics this connection now receives."""
        return await self.request("subscribe", topics=list(topics))

    async def unsubscribe(self, *topics: str) -> Any:
        """Stop receiving these event topics; returns those left."""
        return await self.request("unsubscribe", topics=list(topics))

    async def replay(self, since: int) -> ReplayPage:
        """One page of stored events after ``since`` (ask again from ``next_since`` while ``more``)."""
        return ReplayPage.model_validate(await self.request("replay", since=since))

    async def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The ``limit`` most recent runs, newest first."""
        return [RunRecord.model_validate(r) for r in await self.request("list_runs", limit=limit)]

    async def get_run(self, run_id: str) -> RunRecord:
        """One run's record; raises NotFound for an unknown ``run_id``."""
        return RunRecord.model_validate(await self.request("get_run", run_id=run_id))

    # devices (see README "Devices") ------------------------------------------------------
    async def list_devices(self) -> list[dict[str, Any]]:
        """The session's devices: name, class, params, ready and error of each."""
        return await self.request("list_devices")

    async def list_available_devices(self, device_class: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Devices PsychoPy can find on the stimulus PC, by class (optionally one ``device_class``)."""
        return await self.request("list_available_devices", device_class=device_class)

    async def add_device(self, name: str, device_class: str, params: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        """Create a session device between runs (e.g. a button box for Builder components naming it)."""
        return await self.request("add_device", name=name, device_class=device_class, params=params or {})

    async def remove_device(self, name: str) -> bool:
        """Close and forget a session device between runs; True if it existed."""
        return await self.request("remove_device", name=name)

    async def setup_devices(self, key: str) -> list[str]:
        """Run experiment ``key``'s ``setupDevices`` once between runs; the names of the devices it made."""
        return await self.request("setup_devices", key=key)

    # session plans
    async def plan_start(self, toml: str | None = None, *, plan: dict[str, Any] | None = None,
                         simulate: dict[str, Any] | bool | None = None) -> dict[str, Any]:
        """Start a session plan from its TOML text (or a dict); ``simulate`` dry-runs every run."""
        args: dict[str, Any] = {"toml": toml, "plan": plan}
        if simulate:
            args["simulate"] = {} if simulate is True else dict(simulate)
        return await self.request("plan_start", timeout=60, **args)

    async def plan_state(self) -> dict[str, Any]:
        """The session plan's state: steps done and to come, per participant, what it waits for."""
        return await self.request("plan_state")

    async def plan_pause(self) -> dict[str, Any]:
        """Hold the plan after the run in progress (or now, between runs)."""
        return await self.request("plan_pause")

    async def plan_continue(self) -> dict[str, Any]:
        """Go on with a held plan (after a pause, a failure that stopped it, or a break that waits)."""
        return await self.request("plan_continue")

    async def plan_skip(self) -> dict[str, Any]:
        """Skip the plan's current step (a run in progress is stopped and recorded as skipped)."""
        return await self.request("plan_skip", timeout=60)

    async def plan_cancel(self) -> dict[str, Any]:
        """End the plan (a run in progress is stopped, its data saved); nothing more of it runs."""
        return await self.request("plan_cancel", timeout=60)


__all__ = ["AsyncClient", "AsyncRun", "Event"]
