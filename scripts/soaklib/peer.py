"""One WebSocket client of the soak: speaks the protocol directly, counts and checks what it receives."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .errors import SoakError


class Peer:
    """One WebSocket client speaking the protocol directly; counts and checks what it receives."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.ws = None
        self.reader: asyncio.Task | None = None
        self.last_seq: int | None = None
        self.seq_gaps = 0  # events missing from the seq numbering
        self.seq_repeats = 0
        self.events = 0
        self.frames = 0
        self.bytes = 0
        self.data_events = 0
        self.data_bytes = 0  # approximate: frame bytes shared out among a batch's events
        self.rows = 0  # rows received (duplicates included)
        self.lost = 0
        self.duplicated = 0
        self.bad_rows = 0  # events whose "row" values do not match first_row
        self.next_row: dict[str, int] = {}  # run id -> next expected first_row
        self.lags: list[float] = []  # seconds from publication in the worker to receipt, see take_lags
        self.data_first_at: float | None = None  # receipt times of the first and last data_rows event
        self.data_last_at: float | None = None
        self.started: dict[str, dict] = {}
        self.stopping: dict[str, dict] = {}
        self.ended: dict[str, dict] = {}
        self.gap_messages: list[dict] = []
        self.goodbye: dict | None = None
        self.closed: dict | None = None
        self.changed = asyncio.Event()
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)

    async def connect(self, url: str, token: str) -> None:
        """Open the WebSocket and authenticate (live events only); then read in the background.

        Raises SoakError when the handshake goes wrong.
        """
        self.ws = await connect(url, max_size=None, compression=None, open_timeout=30)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if hello.get("type") != "hello":
            raise SoakError(f"{self.name}: expected hello, got {hello.get('type')}")
        await self.ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": self.role,
                                       "since": None, "client": self.name}))
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if welcome.get("type") != "welcome":
            raise SoakError(f"{self.name}: authentication failed: {welcome}")
        self.last_seq = welcome["last_seq"]
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for raw in ws:
                now = time.time()
                self.frames += 1
                self.bytes += len(raw)
                message = json.loads(raw)
                items = message if isinstance(message, list) else (message,)
                share = len(raw) / max(1, len(items))
                for item in items:
                    kind = item.get("type")
                    if kind == "event":
                        self._on_event(item, now, share)
                    elif kind == "reply":
                        future = self._pending.pop(item.get("id"), None)
                        if future is not None and not future.done():
                            future.set_result(item)
                    elif kind == "gap":
                        self.gap_messages.append(item)
                    elif kind == "goodbye":
                        self.goodbye = item
        except ConnectionClosed:
            pass
        finally:
            self.closed = {"code": ws.close_code, "reason": ws.close_reason, "at": time.time()}
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: connection closed"))
            self._pending.clear()
            self.changed.set()

    def _on_event(self, item: dict, now: float, size: float) -> None:
        seq = item["seq"]
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.seq_repeats += 1
                return
            self.seq_gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self.events += 1
        event, data = item["event"], item.get("data") or {}
        run_id = data.get("run_id")
        if event == "data_rows":
            rows = data["rows"]
            first, n = data["first_row"], len(rows)
            expected = self.next_row.get(run_id, 0)
            if first > expected:
                self.lost += first - expected
            elif first < expected:
                self.duplicated += min(expected, first + n) - first
            self.next_row[run_id] = max(expected, first + n)
            self.rows += n
            self.data_events += 1
            self.data_bytes += size
            if self.data_first_at is None:
                self.data_first_at = now
            self.data_last_at = now
            if n and (rows[0].get("row") != first or rows[-1].get("row") != first + n - 1):
                self.bad_rows += 1
            self.lags.append(now - item["time"])
        elif event == "run_started":
            self.started[run_id] = item
        elif event == "run_stopping":
            self.stopping[run_id] = item
        elif event in ("run_finished", "run_failed"):
            self.ended[run_id] = item
            self.changed.set()

    async def request(self, cmd: str, args: dict | None = None, timeout: float = 30.0) -> tuple[dict, float]:
        """Send a command; its reply and round trip in seconds."""
        if self.closed is not None:
            raise ConnectionError(f"{self.name}: connection closed")
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        started = time.perf_counter()
        await self.ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd,
                                       "args": args or {}}))
        try:
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        return reply, time.perf_counter() - started

    async def close(self) -> None:
        """Close the connection (at most 5 s) and stop the reader; never raises."""
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:  # noqa: BLE001
                pass
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def take_lags(self) -> list[float]:
        """Delivery lags (seconds, publication in the worker to receipt) since the last call."""
        lags, self.lags = self.lags, []
        return lags

    def unique_rows(self, run_id: str | None) -> int:
        """Rows of ``run_id`` received at least once (0 without a run)."""
        return self.next_row.get(run_id, 0) - self.lost if run_id else 0

    def describe(self) -> dict[str, Any]:
        """What this client counted, for the report."""
        return {"name": self.name, "role": self.role, "rows": self.rows, "lost": self.lost,
                "duplicated": self.duplicated, "bad_rows": self.bad_rows, "events": self.events,
                "data_events": self.data_events, "frames": self.frames, "bytes": self.bytes,
                "seq_gaps": self.seq_gaps, "seq_repeats": self.seq_repeats, "gap_messages": self.gap_messages,
                "goodbye": self.goodbye, "closed": self.closed}

