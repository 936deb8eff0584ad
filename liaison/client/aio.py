"""Async Python client for a liaison server.

    async with AsyncClient("ws://127.0.0.1:8765/", token="...") as client:
        run = await client.run("stroop_lite", exp_info={"participant": "p01"})
        async for event in client.events():
            ...
        outcome = await run.wait()

The client keeps the last event sequence number it saw. If the connection
drops it reconnects (with backoff) and asks for everything since then, so
the event stream it hands you has no gaps and no duplicates; if the server
no longer has some events, you get a ``gap`` event saying which.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .errors import ConnectionLost, LiaisonError, Unauthorized, error_from_body

log = logging.getLogger("liaison.client")
END_EVENTS = ("run_finished", "run_failed")
BACKLOG = 10_000  # events kept for the first events() consumer, from connect on


@dataclass
class Event:
    """An event from the server: ``event`` is its type (``run_started``, ``data_rows``...)."""

    seq: int
    event: str
    time: float
    data: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        return self.data.get("run_id")


@dataclass
class AsyncRun:
    """A run started by this client; events for it accumulate as they arrive."""

    run_id: str
    key: str
    client: "AsyncClient" = field(repr=False)

    @property
    def events(self) -> list[Event]:
        return list(self.client._run_events.get(self.run_id, []))

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for e in self.events if e.event == "data_rows" for row in e.data["rows"]]

    async def wait(self, timeout: float | None = None) -> Event:
        """Wait for the run's final event (``run_finished`` or ``run_failed``)."""
        return await asyncio.wait_for(asyncio.shield(self.client._run_end(self.run_id)), timeout)

    async def pause(self) -> Any:
        return await self.client.pause()

    async def resume(self) -> Any:
        return await self.client.resume()

    async def stop(self) -> Any:
        return await self.client.stop()


class AsyncClient:
    def __init__(self, url: str = "ws://127.0.0.1:8765/", token: str | None = None, *,
                 role: str = "controller", name: str | None = None, reconnect: bool = True,
                 since: int | None = None, timeout: float = 30.0, reconnect_for: float = 120.0) -> None:
        self.url = url
        self.token = token
        self.role = role
        self.name = name or "liaison-python"
        self.reconnect = reconnect
        self.timeout = timeout
        self.reconnect_for = reconnect_for
        self.last_seq: int | None = since
        self.welcome: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None
        self.goodbye: dict[str, Any] | None = None
        self._ws = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future] = {}
        self._queues: list[asyncio.Queue] = []
        # Events that arrive before anyone iterates events() (the replay comes
        # right after the welcome) wait here for the first consumer.
        self._backlog: collections.deque | None = collections.deque(maxlen=BACKLOG)
        self._ended = False
        self._run_events: dict[str, list[Event]] = {}
        self._run_waiters: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._closed = False
        self._connected = asyncio.Event()

    # --- connection -------------------------------------------------------------------
    async def __aenter__(self) -> "AsyncClient":
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
        try:
            ws = await connect(self.url, max_size=None, open_timeout=self.timeout,
                               compression=None, ping_interval=20)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode(errors="replace").strip()
            if status == 403:
                raise LiaisonError(f"server refused the connection: {body}", code="forbidden") from exc
            raise LiaisonError(f"server answered HTTP {status}: {body}", code="connection_lost") from exc
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {self.url}: {exc}") from exc
        self.hello = json.loads(await asyncio.wait_for(ws.recv(), self.timeout))
        auth = {"v": 1, "type": "auth", "token": self.token, "role": self.role, "client": self.name,
                "since": self.last_seq}
        await ws.send(json.dumps(auth))
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), self.timeout))
        except ConnectionClosed as exc:
            raise Unauthorized(f"the server closed the connection during authentication: {exc}") from exc
        if first.get("type") == "reply" and not first.get("ok"):
            await ws.close()
            raise error_from_body(first.get("error"))
        if first.get("type") != "welcome":
            await ws.close()
            raise LiaisonError(f"unexpected first message from server: {first.get('type')}",
                               code="invalid_message")
        self.welcome = first
        if self.last_seq is None:
            self.last_seq = first.get("last_seq", 0)
        self._ws = ws
        self._connected.set()

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
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
                    self._on_frame(raw)
            except ConnectionClosed:
                pass
            self._connected.clear()
            self._fail_pending(ConnectionLost("connection lost before the reply arrived"))
            if self._closed or not self.reconnect or (self.goodbye or {}).get("code") in (4001, 4003):
                self._end_streams()
                return
            if not await self._reconnect():
                self._end_streams()
                return

    async def _reconnect(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_for
        delay = 0.1
        while not self._closed and loop.time() < deadline:
            try:
                await self._open()
                log.info("reconnected to %s (since seq %s)", self.url, self.last_seq)
                return True
            except Unauthorized:
                return False
            except (LiaisonError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return False

    # --- incoming --------------------------------------------------------------------------
    def _on_frame(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        for item in message if isinstance(message, list) else (message,):
            kind = item.get("type")
            if kind == "reply":
                future = self._pending.pop(item.get("id"), None)
                if future is not None and not future.done():
                    if item.get("ok"):
                        future.set_result(item.get("result"))
                    else:
                        future.set_exception(error_from_body(item.get("error")))
            elif kind == "event":
                self._on_event(Event(item["seq"], item["event"], item["time"], item.get("data") or {}))
            elif kind == "gap":
                self._broadcast(Event(item["to_seq"], "gap", 0.0, item))
            elif kind == "goodbye":
                self.goodbye = item

    def _on_event(self, event: Event) -> None:
        if self.last_seq is not None and event.seq <= self.last_seq:
            return  # already seen (replay overlap after a reconnect)
        self.last_seq = event.seq
        run_id = event.run_id
        if run_id is not None:
            self._run_events.setdefault(run_id, []).append(event)
            if event.event in END_EVENTS:
                waiter = self._run_waiters.get(run_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
        self._broadcast(event)

    def _broadcast(self, event: Event) -> None:
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
        """Send a command and return its result, or raise the matching LiaisonError."""
        if self._closed:
            raise ConnectionLost("client is closed")
        if not self._connected.is_set():
            await asyncio.wait_for(self._connected.wait(), timeout or self.timeout)
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = {"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args}
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise ConnectionLost(f"connection lost while sending {cmd}") from exc
        return await asyncio.wait_for(future, timeout or self.timeout)

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def state(self) -> dict[str, Any]:
        return await self.request("state")

    async def list_experiments(self) -> list[dict[str, Any]]:
        return await self.request("list_experiments")

    async def add_experiment(self, path: str, key: str | None = None) -> dict[str, Any]:
        return await self.request("add_experiment", timeout=180, path=path, key=key)

    async def run(self, key: str, exp_info: dict[str, Any] | None = None, seed: int | None = None,
                  simulate: dict[str, Any] | bool | None = None) -> AsyncRun:
        """Start a run; ``simulate`` (a policy dict, or True for the defaults) makes it a dry run."""
        args: dict[str, Any] = {"key": key, "exp_info": exp_info, "seed": seed}
        if simulate:
            args["simulate"] = {} if simulate is True else dict(simulate)
        result = await self.request("run", **args)
        return AsyncRun(result["run_id"], result.get("key", key), self)

    async def pause(self) -> Any:
        return await self.request("pause")

    async def resume(self) -> Any:
        return await self.request("resume")

    async def stop(self) -> Any:
        return await self.request("stop")

    async def abort(self, grace: float = 2.0) -> dict[str, Any]:
        return await self.request("abort", timeout=grace + 180, grace=grace)

    async def get_exp_info(self) -> dict[str, Any]:
        return await self.request("get_exp_info")

    async def set_exp_info(self, values: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        return await self.request("set_exp_info", values={**(values or {}), **more})

    async def add_data(self, name: str, value: Any) -> Any:
        return await self.request("add_data", name=name, value=value)

    async def annotate(self, text: str) -> Any:
        return await self.request("annotate", text=text)

    async def trials(self, n: int = 1, start: int = 0) -> dict[str, Any]:
        return await self.request("trials", n=n, start=start)

    async def skip_trials(self, n: int = 1) -> Any:
        return await self.request("skip_trials", n=n)

    async def rewind_trials(self, n: int = 1) -> Any:
        return await self.request("rewind_trials", n=n)

    async def setup_window(self, **params: Any) -> dict[str, Any]:
        return await self.request("setup_window", timeout=180, **params)

    async def subscribe(self, *topics: str) -> Any:
        return await self.request("subscribe", topics=list(topics))

    async def unsubscribe(self, *topics: str) -> Any:
        return await self.request("unsubscribe", topics=list(topics))

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self.request("list_runs", limit=limit)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return await self.request("get_run", run_id=run_id)

    # session plans
    async def plan_start(self, toml: str | None = None, *, plan: dict[str, Any] | None = None,
                         simulate: dict[str, Any] | bool | None = None) -> dict[str, Any]:
        """Start a session plan from its TOML text (or a dict); ``simulate`` dry-runs every run."""
        args: dict[str, Any] = {"toml": toml, "plan": plan}
        if simulate:
            args["simulate"] = {} if simulate is True else dict(simulate)
        return await self.request("plan_start", timeout=60, **args)

    async def plan_state(self) -> dict[str, Any]:
        return await self.request("plan_state")

    async def plan_pause(self) -> dict[str, Any]:
        return await self.request("plan_pause")

    async def plan_continue(self) -> dict[str, Any]:
        return await self.request("plan_continue")

    async def plan_skip(self) -> dict[str, Any]:
        return await self.request("plan_skip", timeout=60)

    async def plan_cancel(self) -> dict[str, Any]:
        return await self.request("plan_cancel", timeout=60)


__all__ = ["AsyncClient", "AsyncRun", "Event", "websockets"]
