"""Blocking Python client: the async client on a private event-loop thread.

    with Client("ws://127.0.0.1:8765/", token="...") as client:
        run = client.run("stroop_lite", exp_info={"participant": "p01"})
        for event in client.events(timeout=60):
            print(event.event, event.data)
            if event.event in ("run_finished", "run_failed"):
                break
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Iterator

from .aio import AsyncClient, AsyncRun, Event


class Run:
    """A run started through :class:`Client`."""

    def __init__(self, inner: AsyncRun, client: "Client") -> None:
        self._inner = inner
        self._client = client
        self.run_id = inner.run_id
        self.key = inner.key

    @property
    def events(self) -> list[Event]:
        return self._inner.events

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self._inner.rows

    def wait(self, timeout: float | None = None) -> Event:
        """Block until the run ends; returns its ``run_finished``/``run_failed`` event."""
        return self._client._call(self._inner.wait(timeout), None if timeout is None else timeout + 5)

    def pause(self) -> Any:
        return self._client.pause()

    def resume(self) -> Any:
        return self._client.resume()

    def stop(self) -> Any:
        return self._client.stop()

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, key={self.key!r})"


class Client:
    def __init__(self, url: str = "ws://127.0.0.1:8765/", token: str | None = None, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="liaison-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(url, token, **options)
        self._events: queue.SimpleQueue | None = None
        self._events_task = None

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # lifecycle
    def connect(self) -> dict[str, Any]:
        try:
            welcome = self._call(self._async.connect())
        except BaseException:
            self._shutdown_loop()
            raise
        self._events = queue.SimpleQueue()
        self._events_task = self._call(self._start_event_pump())
        return welcome

    async def _start_event_pump(self):
        async def pump():
            async for event in self._async.events():
                self._events.put(event)
            self._events.put(None)

        return asyncio.get_running_loop().create_task(pump())

    def close(self) -> None:
        try:
            self._call(self._async.close(), 10)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> "Client":
        self.connect()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def welcome(self) -> dict[str, Any] | None:
        return self._async.welcome

    @property
    def last_seq(self) -> int | None:
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

    # commands
    def request(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        return self._call(self._async.request(cmd, timeout, **args))

    def run(self, key: str, exp_info: dict[str, Any] | None = None, seed: int | None = None,
            simulate: dict[str, Any] | bool | None = None) -> Run:
        """Start a run; ``simulate`` (a policy dict, or True for the defaults) makes it a dry run."""
        return Run(self._call(self._async.run(key, exp_info, seed, simulate)), self)

    def __getattr__(self, name: str):
        method = getattr(AsyncClient, name, None)
        if method is None or name.startswith("_") or name in ("connect", "close", "events", "run"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(getattr(self._async, name)(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call
