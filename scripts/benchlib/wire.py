"""Minimal WebSocket clients for the three servers, written for measuring, not for use.

Each client has two modes:

- *direct*: ``call()`` sends one message and reads until its answer, with no
  task in between (the round-trip measures: the same code path for all three);
- *reader*: ``start_reader()`` runs one task that routes answers to futures and
  everything else to a callback, so commands can be pipelined while events stream.

Decoding uses ``ujson`` when it is installed (PsychoPy depends on it), as the
clients must keep up with 200k deliveries/s on two cores shared with the servers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any, Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

try:
    import ujson

    loads = ujson.loads
except ImportError:  # pragma: no cover - the venv has it through PsychoPy
    loads = json.loads


class WireError(RuntimeError):
    pass


async def open_ws(url: str):
    return await connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=20)


def as_list(data: Any) -> list:
    return data if isinstance(data, list) else [data]


class _Base:
    """Shared reader machinery: ``_route(raw, now)`` decides what each frame is."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pending: dict[Any, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None
        self.closed: tuple[int | None, str | None] | None = None
        self._ids = itertools.count(1)

    def start_reader(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._route(raw, time.time())
        except ConnectionClosed as exc:
            self.closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "no close frame")
        else:
            self.closed = (self.ws.close_code, self.ws.close_reason)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WireError(f"connection closed: {self.closed}"))

    def _route(self, raw: str, now: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _resolve(self, key: Any, message: Any) -> bool:
        future = self.pending.pop(key, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(message)
        return True

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:  # noqa: BLE001 - best effort at the end of a measure
            pass
        if self.reader is not None:
            self.reader.cancel()


# --- ours --------------------------------------------------------------------------------

class Ours(_Base):
    """Our protocol: hello -> auth -> welcome; ``request``/``reply`` by ``id``; ``event`` frames (or lists)."""

    def __init__(self, ws, on_event: Callable[[dict, float], None] | None = None,
                 on_frame: Callable[[str, list, float], None] | None = None) -> None:
        super().__init__(ws)
        self.on_event = on_event  # per event message
        self.on_frame = on_frame  # per WebSocket frame (raw text, its messages), before replies are routed
        self.welcome: dict | None = None

    @classmethod
    async def open(cls, url: str, token: str, role: str = "controller", on_event=None, on_frame=None) -> "Ours":
        ws = await open_ws(url)
        self = cls(ws, on_event, on_frame)
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise WireError(f"expected hello, got {hello!r}")
        await ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": None}))
        while self.welcome is None:
            for message in as_list(json.loads(await ws.recv())):
                if message.get("type") == "welcome":
                    self.welcome = message
                elif message.get("type") == "reply" and not message.get("ok"):
                    raise WireError(f"authentication failed: {message!r}")
        return self

    @staticmethod
    def request_text(request_id: Any, cmd: str, args: dict | None = None) -> str:
        return json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args or {}})

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        """Direct mode: send, read until the reply (events in between are dropped)."""
        request_id = next(self._ids)
        await self.ws.send(self.request_text(request_id, cmd, args))
        while True:
            for message in as_list(loads(await self.ws.recv())):
                if message.get("type") == "reply" and message.get("id") == request_id:
                    return message

    def send_request(self, cmd: str, args: dict | None = None) -> tuple[asyncio.Future, asyncio.Task]:
        """Reader mode: send without waiting; the future gets the reply."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        task = asyncio.ensure_future(self.ws.send(self.request_text(request_id, cmd, args)))
        return future, task

    async def request(self, cmd: str, args: dict | None = None, timeout: float = 30.0) -> dict:
        future, sent = self.send_request(cmd, args)
        await sent
        return await asyncio.wait_for(future, timeout)

    async def checked(self, cmd: str, args: dict | None = None, timeout: float = 30.0) -> Any:
        reply = await self.request(cmd, args, timeout)
        if not reply.get("ok"):
            raise WireError(f"{cmd} failed: {reply.get('error')!r}")
        return reply.get("result")

    def _route(self, raw: str, now: float) -> None:
        items = as_list(loads(raw))
        if self.on_frame is not None:
            self.on_frame(raw, items, now)
        for message in items:
            kind = message.get("type")
            if kind == "reply":
                self._resolve(message.get("id"), message)
            elif kind == "event" and self.on_event is not None:
                self.on_event(message, now)


# --- PsychoPy ------------------------------------------------------------------------------

class Psy(_Base):
    """PsychoPy's liaison: ``{"object", "method", "args", "messageId"}`` -> ``{"result", "messageId"}``.

    An error answer is ``{"type": "error", "msg": ...}`` *without* the messageId,
    so it can only be matched to the oldest outstanding call. Everything else
    (``sendToLiaison`` broadcasts: experiment data, status, queue results) goes
    to ``on_broadcast(text, now)`` undecoded: the experiment-data broadcasts grow
    with the run, and decoding them all would make the client the bottleneck.
    """

    def __init__(self, ws, on_broadcast: Callable[[str, float], None] | None = None) -> None:
        super().__init__(ws)
        self.on_broadcast = on_broadcast

    @classmethod
    async def open(cls, url: str, on_broadcast=None) -> "Psy":
        return cls(await open_ws(url), on_broadcast)

    @staticmethod
    def call_text(message_id: str, obj: str, method: str, args: list | None = None) -> str:
        message = {"object": obj, "method": method, "messageId": message_id}
        if args is not None:
            message["args"] = args
        return json.dumps(message)

    @staticmethod
    def is_answer(raw: str) -> bool:
        return raw.startswith(('{"result": ', '{"type": "error"'))

    async def call(self, obj: str, method: str, args: list | None = None) -> dict:
        """Direct mode: send, read until the answer (broadcasts in between are dropped)."""
        message_id = str(next(self._ids))
        await self.ws.send(self.call_text(message_id, obj, method, args))
        while True:
            raw = await self.ws.recv()
            if self.is_answer(raw):
                message = json.loads(raw)
                if message.get("type") == "error" or message.get("messageId") == message_id:
                    return message

    def send_call(self, obj: str, method: str, args: list | None = None) -> tuple[asyncio.Future, asyncio.Task]:
        message_id = str(next(self._ids))
        future = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        task = asyncio.ensure_future(self.ws.send(self.call_text(message_id, obj, method, args)))
        return future, task

    async def request(self, obj: str, method: str, args: list | None = None, timeout: float = 30.0) -> dict:
        future, sent = self.send_call(obj, method, args)
        await sent
        return await asyncio.wait_for(future, timeout)

    async def checked(self, obj: str, method: str, args: list | None = None, timeout: float = 30.0) -> Any:
        answer = await self.request(obj, method, args, timeout)
        if "result" not in answer:
            raise WireError(f"{obj}.{method} failed: {str(answer.get('msg'))[-800:]}")
        return answer["result"]

    def _route(self, raw: str, now: float) -> None:
        if self.is_answer(raw):
            message = json.loads(raw)
            if message.get("type") == "error":
                # A liaison error answer has no messageId: blame the oldest call. (A failed
                # SessionQueue task is broadcast in the same form; with no call pending it
                # goes to on_broadcast.)
                if self.pending:
                    self._resolve(next(iter(self.pending)), message)
                    return
            if self._resolve(message.get("messageId"), message):
                return
        if self.on_broadcast is not None:
            self.on_broadcast(raw, now)


# --- floor ------------------------------------------------------------------------------------

class Echo:
    """The floor: the same request text as our ``ping``, echoed back."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str) -> "Echo":
        return cls(await open_ws(url))

    async def call(self) -> dict:
        request_id = next(self._ids)
        await self.ws.send(Ours.request_text(request_id, "ping"))
        echoed = loads(await self.ws.recv())
        if echoed.get("id") != request_id:
            raise WireError(f"echo returned {echoed!r}")
        return echoed

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:  # noqa: BLE001
            pass


# --- PsychoPy experiment-data broadcasts, read without decoding ------------------------------

def trials_data_summary(raw: str) -> tuple[int, float | None] | None:
    """``(rows, t_row of the last row)`` of a ``trials_data`` broadcast, or None for other messages.

    ``ExperimentHandler.getJSON`` writes ``{"type": "trials_data", "thisTrial",
    "trials": [...], "priority": {...}}`` with ``indent=True``; rows are counted
    by their ``"t_row"`` key before ``"priority"`` (which lists column names too).
    """
    if '"trials_data"' not in raw[:40]:
        return None
    end = raw.find('\n "priority"')
    if end < 0:
        end = len(raw)
    rows = raw.count('"t_row": ', 0, end)
    at = raw.rfind('"t_row": ', 0, end)
    if at < 0:
        return rows, None
    start = at + len('"t_row": ')
    stop = start
    while stop < end and raw[stop] not in ",\n}":
        stop += 1
    try:
        return rows, float(raw[start:stop])
    except ValueError:
        return rows, None
