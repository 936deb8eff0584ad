#!/usr/bin/env python
"""Many simulated booths in one light process, speaking the real booth protocol (no windows).

Each booth is a WebSocket server on its own loopback port that does what a
``liaison serve`` does on the wire: ``hello`` (with a session id), ``auth``
with a token, ``welcome`` with a state snapshot, a replay of the events
after ``since`` (from a bounded in-memory log), then live events, batched
into array frames as a booth's hub does when several are queued. It answers
``ping``, ``state`` and ``trials``; anything else gets a typed error.

The events are a recorded rt_demo run (``scripts/recordings/rt_demo_run.jsonl``,
from a real booth's journal) replayed over and over: ``run_started``, then
its data rows cycled up to ``--rows-per-run`` at ``--rows-per-second`` (one
row per ``data_rows`` event, as a real booth sends one per trial: the
session publishes the rows completed since the previous trial boundary),
then ``run_finished``, then the next run. Each event's ``time`` is the
moment it was sent, so the fleet's lag figures are end to end.

The simulator must cost far less than the fleet it drives, or it measures
itself: each recorded row is encoded to JSON once, at start, and a
``data_rows`` event is that text in a template (no JSON encoding per event);
its replay log keeps a few numbers per event, not the text (the text is
rebuilt on a replay), so its memory is a few megabytes per booth.

Prints one JSON line when all booths listen: ``{"ports": [...]}``; starts
sending on SIGUSR1; on SIGTERM it stops sending and prints ``{"sent_rows": N,
...}``, but still answers (replays) until a second SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from pydantic_core import to_json
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

RECORDING = Path(__file__).resolve().parent / "recordings" / "rt_demo_run.jsonl"
LOG_LIMIT = 20_000  # events kept per booth for replays (older ones: a gap, like a booth without journal)


def load_recording(path: Path) -> tuple[dict, list[str], dict]:
    """The recorded run: its ``run_started`` event, its rows as compact JSON texts, its ``run_finished``."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    started = next(e for e in events if e["event"] == "run_started")
    rows = [to_json(r).decode() for e in events if e["event"] == "data_rows" for r in e["data"]["rows"]]
    finished = next(e for e in events if e["event"] == "run_finished")
    return started, rows, finished


def row_event(seq: int, when: float, run_id: str, first_row: int, row: str) -> str:
    """A ``data_rows`` event's wire text, as a booth's hub serialises it (same fields, same order)."""
    return (f'{{"v":1,"type":"event","seq":{seq},"event":"data_rows","time":{when!r},"data":{{'
            f'"run_id":"{run_id}","key":"rt_demo","first_row":{first_row},"rows":[{row}]}}}}')


class SimBooth:
    """One booth: its event log, its clients, its run."""

    def __init__(self, index: int, token: str, recording, rows_per_run: int) -> None:
        self.index = index
        self.token = token
        self.session_id = secrets.token_hex(8)
        self.started, self.rows, self.finished = recording
        self.rows_per_run = rows_per_run
        self.seq = 0
        # (seq, text) of a rare event, or (seq, time, run_id, first_row) of a data_rows one (rebuilt on replay)
        self.log: collections.deque[tuple] = collections.deque(maxlen=LOG_LIMIT)
        self.clients: set = set()
        self.run_id: str | None = None
        self.row = 0
        self.runs = 0
        self.sent_rows = 0
        self.pending: list[str] = []

    def emit(self, event: str, data: dict) -> None:
        self.seq += 1
        text = json.dumps({"v": 1, "type": "event", "seq": self.seq, "event": event, "time": time.time(),
                           "data": data}, separators=(",", ":"))
        self.log.append((self.seq, text))
        self.pending.append(text)

    def emit_row(self) -> None:
        self.seq += 1
        when = time.time()
        self.log.append((self.seq, when, self.run_id, self.row))
        self.pending.append(row_event(self.seq, when, self.run_id, self.row, self.rows[self.row % len(self.rows)]))

    def text_of(self, entry: tuple) -> str:
        if len(entry) == 2:
            return entry[1]
        seq, when, run_id, first_row = entry
        return row_event(seq, when, run_id, first_row, self.rows[first_row % len(self.rows)])

    def step(self, rows: int) -> None:
        """Emit the next ``rows`` rows (starting and finishing runs as the recording does)."""
        for _ in range(rows):
            if self.run_id is None:
                self.runs += 1
                self.run_id = f"sim{self.index}-{self.session_id[:6]}-{self.runs}"
                data = copy.deepcopy(self.started["data"])
                data["run_id"] = self.run_id
                data["exp_info"]["participant"] = f"s{self.index:03d}-{self.runs}"
                self.emit("run_started", data)
                self.emit("status", {"status": "running", "run_id": self.run_id, "key": data["key"]})
                self.row = 0
            self.emit_row()
            self.row += 1
            self.sent_rows += 1
            if self.row >= self.rows_per_run:
                data = dict(self.finished["data"], run_id=self.run_id, rows=self.row)
                self.emit("run_finished", data)
                self.emit("status", {"status": "idle", "run_id": None, "key": None})
                self.run_id = None

    async def flush(self) -> None:
        if not self.pending:
            return
        texts, self.pending = self.pending, []
        frame = texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]"
        for ws in list(self.clients):
            try:
                await ws.send(frame)
            except ConnectionClosed:
                self.clients.discard(ws)

    def state(self) -> dict:
        return {"status": "running" if self.run_id else "idle", "run_id": self.run_id,
                "key": "rt_demo" if self.run_id else None,
                "exp_info": {"participant": f"s{self.index:03d}-{self.runs}"}, "rows": self.row,
                "experiments": [{"key": "rt_demo"}], "last_seq": self.seq}

    async def handler(self, ws) -> None:
        await ws.send(json.dumps({"v": 1, "type": "hello", "protocol": 1, "server": "liaison-sim 0",
                                  "session_id": self.session_id, "auth": "token", "max_message_bytes": 1 << 20}))
        try:
            auth = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except (asyncio.TimeoutError, ConnectionClosed, ValueError):
            return
        if auth.get("type") != "auth" or auth.get("token") != self.token:
            await ws.send(json.dumps({"v": 1, "type": "reply", "id": None, "ok": False,
                                      "error": {"code": "unauthorized", "message": "missing or wrong token"}}))
            await ws.close(4001, "authentication failed")
            return
        since = auth.get("since")
        await ws.send(json.dumps({"v": 1, "type": "welcome", "role": auth.get("role", "controller"),
                                  "client_id": secrets.token_hex(4), "state": self.state(), "last_seq": self.seq,
                                  "replay": "none" if since is None else "full"}))
        if since is not None and since < self.seq:
            oldest = self.log[0][0] if self.log else self.seq + 1
            if since + 1 < oldest:
                await ws.send(json.dumps({"v": 1, "type": "gap", "from_seq": since + 1, "to_seq": oldest - 1,
                                          "reason": "these events are no longer stored"}))
            missed = [self.text_of(entry) for entry in list(self.log) if entry[0] > since]
            for start in range(0, len(missed), 512):
                await ws.send("[" + ",".join(missed[start:start + 512]) + "]")
        self.clients.add(ws)
        try:
            async for raw in ws:
                request = json.loads(raw)
                cmd, rid = request.get("cmd"), request.get("id")
                if cmd == "ping":
                    reply = {"ok": True, "result": {"pong": True, "time": time.time()}}
                elif cmd == "state":
                    reply = {"ok": True, "result": self.state()}
                elif cmd == "trials":
                    reply = {"ok": True, "result": {"current": {"thisN": self.row}, "future": []}}
                else:
                    reply = {"ok": False, "error": {"code": "forbidden", "message": f"the simulator ignores {cmd}"}}
                await ws.send(json.dumps({"v": 1, "type": "reply", "id": rid, **reply}))
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--booths", type=int, default=10)
    parser.add_argument("--rows-per-second", type=float, default=100.0, help="per booth")
    parser.add_argument("--rows-per-run", type=int, default=500)
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between frames")
    parser.add_argument("--token", default="sim-token-0123456789")
    args = parser.parse_args()
    recording = load_recording(RECORDING)
    booths = [SimBooth(i, args.token, recording, args.rows_per_run) for i in range(args.booths)]
    servers = []
    for booth in booths:
        servers.append(await serve(booth.handler, "127.0.0.1", 0, compression=None, max_queue=16,
                                   ping_interval=None))
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports, "session_ids": [b.session_id for b in booths]}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)  # start sending rows (after the fleet connected)
    await asyncio.wait([asyncio.ensure_future(go.wait()), asyncio.ensure_future(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    began = time.monotonic()
    due = 0.0
    late_ticks = 0
    ticks = 0
    while not stop.is_set():
        ticks += 1
        elapsed = time.monotonic() - began
        target = int(elapsed * args.rows_per_second)  # rows each booth should have sent by now
        for booth in booths:
            booth.step(max(0, target - booth.sent_rows))
        await asyncio.gather(*(b.flush() for b in booths))
        due += args.tick
        wait = began + due - time.monotonic()
        if wait < 0:
            late_ticks += 1
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, wait))
        except (asyncio.TimeoutError, TimeoutError):
            pass
    duration = time.monotonic() - began
    print(json.dumps({"sent_rows": sum(b.sent_rows for b in booths), "duration": duration,
                      "last_seq": {str(i): b.seq for i, b in enumerate(booths)},
                      "late_ticks": late_ticks, "ticks": ticks}), flush=True)
    # Keep serving (replays for a fleet that is catching up) until the second SIGTERM; then leave
    # at once rather than wait for 200 servers' clients to say goodbye.
    stop.clear()
    await stop.wait()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
