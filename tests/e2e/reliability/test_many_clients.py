"""100 clients come and go during a real run; steady observers lose nothing.

Three observers connect before the run and read continuously. While the run
streams its data rows, 100 short-lived clients connect and disconnect, in
every way a client can: politely, abruptly (TCP reset, no close frame),
before authenticating, with a bad first message or a wrong token, replaying
with ``since``, or without ever finishing the WebSocket handshake. Every
steady observer must see every event of the stream exactly once and in
order, and with it every data row of the run, and the run must complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.timeout(120)

N_TRIALS = 100_000  # far more than can run: the run is stopped once the clients are done
FRAMES_PER_TRIAL = 3
N_CHURN = 100
CONCURRENCY = 10
STAGGER = 0.005  # seconds between client starts
STEP_TIMEOUT = 20.0
OPTIONS: dict[str, Any] = {"proxy": None, "compression": None, "max_size": None, "open_timeout": STEP_TIMEOUT}


def messages(raw: str | bytes) -> list[dict[str, Any]]:
    data = json.loads(raw)
    return data if isinstance(data, list) else [data]


async def recv(ws) -> list[dict[str, Any]]:
    return messages(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))


async def open_session(url: str, token: str | None, role: str = "observer", since: int | None = None):
    ws = await connect(url, **OPTIONS)
    hello = (await recv(ws))[0]
    assert hello["type"] == "hello", hello
    await ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": since}))
    welcome = (await recv(ws))[0]
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def request(ws, cmd: str, request_id: Any, **args: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send a request; return its reply and the events that arrived before it."""
    await ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args}))
    events = []
    while True:
        for message in await recv(ws):
            if message["type"] == "reply":
                assert message["id"] == request_id, message
                return message, events
            assert message["type"] == "event", message
            events.append(message)


async def close_code(ws) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


class Steady:
    """An observer that reads every frame until the run it watches has ended."""

    def __init__(self, ws, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.events: list[dict[str, Any]] = []
        self.last_seq = welcome["last_seq"]

    async def read_until_run_end(self) -> None:
        while True:
            for message in await recv(self.ws):
                assert message["type"] == "event", f"unexpected message to a steady observer: {message}"
                self.events.append(message)
                self.last_seq = message["seq"]
                if message["event"] in ("run_finished", "run_failed"):
                    return


class Churn:
    """The 100 short-lived clients and what each of them observed."""

    def __init__(self, url: str, token: str, steady: Steady) -> None:
        self.url = url
        self.token = token
        self.steady = steady
        self.statuses: list[str] = []
        self.done: list[str] = []

    async def client(self, index: int) -> None:
        kind = index % 10
        name = ["polite", "controller", "abrupt", "no-auth", "garbage", "wrong-token", "since",
                "subscribe-data", "silent", "no-handshake"][kind]
        if kind == 9:  # TCP connect, half a handshake, gone
            host, port = self.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        elif kind in (3, 4, 5):
            async with connect(self.url, **OPTIONS) as ws:
                assert (await recv(ws))[0]["type"] == "hello"
                if kind == 3:
                    pass  # leave before authenticating
                elif kind == 4:
                    await ws.send("{garbage")
                    assert (await recv(ws))[0]["error"]["code"] == "invalid_json"
                    assert await close_code(ws) == 4009
                else:
                    await ws.send(json.dumps({"v": 1, "type": "auth", "token": "wrong-" + self.token}))
                    assert (await recv(ws))[0]["error"]["code"] == "unauthorized"
                    assert await close_code(ws) == 4001
        else:
            since = max(0, self.steady.last_seq - 20) if kind == 6 else None
            ws, welcome = await open_session(self.url, self.token, "controller" if kind == 1 else "observer", since)
            self.statuses.append(welcome["state"]["status"])
            try:
                if kind == 0:
                    reply, _ = await request(ws, "ping", f"churn-{index}")
                    assert reply["ok"] and reply["result"]["pong"] is True
                elif kind == 1:
                    reply, _ = await request(ws, "state", f"churn-{index}")
                    assert reply["ok"] and reply["result"]["status"] in ("starting", "running", "idle")
                elif kind == 2:
                    ws.transport.abort()  # no close frame, TCP reset
                elif kind == 6:
                    assert welcome["replay"] == "full", welcome
                    # The replay starts right after `since`, in order, with no gaps.
                    seqs = []
                    while len(seqs) < 10:
                        seqs += [m["seq"] for m in await recv(ws) if m["type"] == "event"]
                    assert seqs == list(range(since + 1, since + 1 + len(seqs))), seqs
                elif kind == 7:
                    reply, _ = await request(ws, "unsubscribe", f"churn-u{index}", topics=["all"])
                    assert reply["ok"] and reply["result"]["topics"] == []
                    reply, _ = await request(ws, "subscribe", f"churn-s{index}", topics=["data"])
                    assert reply["ok"] and reply["result"]["topics"] == ["data"]
                # kind 8: connect, say nothing, leave
            finally:
                if kind != 2:
                    await ws.close()
        self.done.append(name)

    async def run_all(self) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(index: int) -> None:
            await asyncio.sleep(index * STAGGER)  # spread the clients over the run
            async with gate:
                await asyncio.wait_for(self.client(index), 3 * STEP_TIMEOUT)

        await asyncio.gather(*(one(i) for i in range(N_CHURN)))


async def scenario(url: str, token: str) -> dict[str, Any]:
    steady = [Steady(*await open_session(url, token)) for _ in range(3)]
    readers = [asyncio.create_task(s.read_until_run_end()) for s in steady]
    controller, _ = await open_session(url, token, "controller")
    reply, _ = await request(controller, "run", "start", key="frames_demo",
                             exp_info={"participant": "many-clients", "n_trials": N_TRIALS,
                                       "frames_per_trial": FRAMES_PER_TRIAL})
    assert reply["ok"], reply
    run_id = reply["result"]["run_id"]
    # Churn starts once rows are flowing.
    deadline = time.monotonic() + 60
    while not any(e["event"] == "data_rows" for e in steady[0].events):
        assert time.monotonic() < deadline, "the run produced no data"
        assert not readers[0].done(), "the run ended before producing data"
        await asyncio.sleep(0.005)
    churn = Churn(url, token, steady[0])
    started = time.monotonic()
    await churn.run_all()
    churn_seconds = time.monotonic() - started
    run_still_going = not readers[0].done()
    reply, _ = await request(controller, "stop", "stop")
    assert reply["ok"], reply
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    reply, _ = await request(controller, "ping", "after")
    assert reply["ok"]
    await controller.close()
    for s in steady:
        await s.ws.close()
    return {"steady": steady, "run_id": run_id, "churn": churn, "churn_seconds": churn_seconds,
            "run_still_going": run_still_going}


def test_steady_observers_get_every_row_while_100_clients_come_and_go(server):
    outcome = asyncio.run(scenario(server.url, server.token))
    run_id = outcome["run_id"]
    churn: Churn = outcome["churn"]
    assert len(churn.done) == N_CHURN, sorted(churn.done)
    # The premise: the clients came and went while the run was streaming rows.
    assert outcome["run_still_going"], (
        f"the run ended before the {N_CHURN} clients were done ({outcome['churn_seconds']:.1f} s)")
    assert churn.statuses.count("running") >= len(churn.statuses) // 2, churn.statuses

    streams = []
    for index, steady in enumerate(outcome["steady"]):
        events = steady.events
        seqs = [e["seq"] for e in events]
        # Every event of the stream, once, in order: seq goes up by exactly one each time.
        assert seqs[0] == steady.welcome["last_seq"] + 1, (index, seqs[:5], steady.welcome["last_seq"])
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"observer {index}: gap or duplicate"
        end = events[-1]
        assert end["event"] == "run_finished" and end["data"]["run_id"] == run_id, end
        assert end["data"]["outcome"] == "stopped", end
        started = [e for e in events if e["event"] == "run_started"]
        assert [e["data"]["run_id"] for e in started] == [run_id]
        # Every data row exactly once: the batches tile 0..rows-1 with no gap or overlap.
        batches = [e["data"] for e in events if e["event"] == "data_rows"]
        assert all(b["run_id"] == run_id for b in batches)
        next_row = 0
        rows = []
        for batch in batches:
            assert batch["first_row"] == next_row, (index, batch["first_row"], next_row)
            assert batch["rows"], batch
            next_row += len(batch["rows"])
            rows.extend(batch["rows"])
        assert next_row == end["data"]["rows"] > 10
        finished = [r for r in rows if "frames" in r]  # the stop may leave the last trial unfinished
        assert len(finished) >= len(rows) - 1
        assert [r["trial_value"] for r in finished] == [10 * i for i in range(len(finished))]
        assert all(r["frames"] == FRAMES_PER_TRIAL for r in finished)
        streams.append([(e["seq"], e["event"], json.dumps(e["data"], sort_keys=True)) for e in events])
    # All three saw the same stream (from the first event they all had).
    common = max(s[0][0] for s in streams)
    assert len({tuple(x for x in s if x[0] >= common) for s in streams}) == 1
    print(f"churn of {N_CHURN} clients took {outcome['churn_seconds']:.1f} s; "
          f"welcome statuses {dict((s, churn.statuses.count(s)) for s in set(churn.statuses))}")
