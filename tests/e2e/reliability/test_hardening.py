"""Faults and attacks that once broke a real server, each against a real ``liaison serve``.

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import make_root, start_serve, stop_serve
from liaison.client import Client, Forbidden, Unauthorized
from reliability_helpers import RAW_OPTIONS, raw_session

TOKEN = "hardening-controller-token"
OBSERVER = "hardening-observer-token"


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def journal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("journal.sqlite*"))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("hardening")
    root, data_dir = make_root(base), base / "data"
    process, banner = start_serve(root, data_dir, "--token", TOKEN, "--observer-token", OBSERVER)
    try:
        yield {"process": process, "url": banner["WebSocket"], "data_dir": data_dir, "root": root}
    finally:
        stop_serve(process)


def http_get(url: str, path: str, host: str | None = None, headers: dict | None = None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_foreign_host_names_are_refused_for_http_and_websocket(served):
    """DNS rebinding: a page at attacker.example resolving to 127.0.0.1 must get nothing."""
    url = served["url"]
    port = urlsplit(url).port
    assert http_get(url, "/")[0] == 200
    status, body = http_get(url, "/", host=f"attacker.example:{port}")
    assert status == 421 and b"Host" in body
    assert http_get(url, "/api/runs/x/files/y.csv", host=f"attacker.example:{port}",
                    headers={"Authorization": f"Bearer {TOKEN}"})[0] == 421

    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert http_get(url, "/", host=f"attacker.example:{port}", headers=upgrade)[0] == 421
    assert http_get(url, "/", host=f"127.0.0.1:{port}", headers=upgrade)[0] == 101  # the same handshake, our name

    async def handshake():  # a second Host header is not a way around it
        async with aconnect(url, additional_headers={"Host": f"attacker.example:{port}"}, **RAW_OPTIONS):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(handshake())
    assert refused.value.response.status_code == 400


def test_bad_paths_get_400_or_404_not_500(served):
    url = served["url"]
    assert http_get(url, "/%00")[0] == 400
    assert http_get(url, "/" + "a" * 3000)[0] == 400
    assert http_get(url, "/api/runs/x/files/%00", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 400
    assert http_get(url, "/api/runs/x/files/" + "b" * 1500, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 404


def test_the_observer_token_watches_and_downloads_but_never_commands(served):
    url = served["url"]
    with pytest.raises(Unauthorized, match="observers only"):
        with Client(url, OBSERVER, role="controller", reconnect=False):
            pass
    with Client(url, TOKEN) as controller:
        run = controller.run("rows_demo", {"participant": "obs", "n_trials": 3})
        end = run.wait(120)
        assert end.data["outcome"] == "completed"
    with Client(url, OBSERVER, role="observer") as observer:
        assert observer.welcome["role"] == "observer"
        with pytest.raises(Forbidden):
            observer.request("pause")
        record = observer.request("get_run", run_id=run.run_id)
    csv_name = next(f for f in record["data_files"] if f.endswith(".csv"))
    status, body = http_get(url, f"/api/runs/{run.run_id}/files/{csv_name}",
                            headers={"Authorization": f"Bearer {OBSERVER}"})
    assert status == 200 and b"payload" in body


def test_refused_commands_cannot_fill_the_disk(served):
    """150 refused add_data of 878 KiB from an observer once grew the journal by 260 MiB."""
    before = journal_bytes(served["data_dir"])
    value = "v" * (878 * 1024)
    with raw_session(served["url"], OBSERVER, role="observer") as session:
        for i in range(150):
            reply = session.request("add_data", f"big-{i}", name="x", value=value)
            assert reply["error"]["code"] == "forbidden"
        session.request("ping", "flush")

    def flushed() -> bool:  # reads are journalled within 50 ms: wait for this connection's last one
        import sqlite3

        db = sqlite3.connect(f"file:{served['data_dir'] / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            return bool(db.execute("SELECT 1 FROM commands WHERE cmd = 'ping' AND request_id = 'flush'").fetchall())
        finally:
            db.close()

    wait_for(flushed, 10, "the refused commands and the ping to be journalled")
    grown = journal_bytes(served["data_dir"]) - before
    assert grown < 1 << 20, f"the journal grew by {grown} bytes for refused commands"


def test_unread_replies_cut_the_client_by_bytes_and_the_server_stays_small(served):
    """20 unread replay(since=0) replies took the server from 57 to 566 MiB; 300 took > 4 GiB."""
    url, pid = served["url"], served["process"].pid
    note = "n" * 9000
    with raw_session(url, TOKEN) as session:  # some 27 MB of events to replay
        session.request("unsubscribe", "quiet", topics=["all"])
        for batch in range(30):  # within the connection's in-flight bound (more would be answered `busy`)
            for i in range(100):
                session.send_json({"v": 1, "type": "request", "id": batch * 100 + i, "cmd": "annotate",
                                   "args": {"text": note}})
            answered = 0
            while answered < 100:
                for message in session.messages(60):
                    if message.get("type") == "reply":
                        assert message["ok"], message
                        answered += 1
    before = rss(pid)
    with raw_session(url, TOKEN, max_size=None) as greedy:
        for i in range(300):  # and not one reply read meanwhile
            greedy.send_json({"v": 1, "type": "request", "id": f"r{i}", "cmd": "replay", "args": {"since": 0}})
        peak = before
        for _ in range(50):  # 5 s of not reading
            peak = max(peak, rss(pid))
            time.sleep(0.1)
        goodbye = None
        try:
            for _ in range(10_000):  # then read what is left, up to the close
                for message in greedy.messages(20):
                    if message.get("type") == "goodbye":
                        goodbye = message
        except ConnectionClosed:
            pass
    assert goodbye is not None and goodbye["code"] == 4008 and "bytes" in goodbye["reason"], goodbye
    assert peak - before < 200 << 20, f"the server grew by {(peak - before) >> 20} MiB"
    with Client(url, TOKEN) as client:  # and everyone else is served as before
        page = client.request("replay", since=0)
        assert page["more"] and len(json.dumps(page)) < 6 << 20 and page["next_since"] > 0


def test_abort_works_while_setup_hangs(served):
    """A hang in setupWindow (before run()) once made abort say nothing was running."""
    with Client(served["url"], TOKEN) as client:
        run = client.run("hangs_in_setup", {"participant": "h"})
        aborted = client.abort(grace=0.5)
        assert aborted.run_id == run.run_id and aborted.killed
        end = run.wait(60)
        assert end.data["outcome"] == "aborted"
        again = client.run("rows_demo", {"participant": "after", "n_trials": 2})
        assert again.wait(120).data["outcome"] == "completed"


def test_a_worker_whose_child_holds_the_pipe_is_still_seen_dead(served):
    """An experiment that forked a child keeping the pipe open once left the state 'unavailable' forever."""
    with Client(served["url"], TOKEN) as client:
        run = client.run("forks_then_dies", {"participant": "f"})
        end = run.wait(60)
        assert end.data["outcome"] == "aborted"
        started = next(e for e in run.events if e.event == "run_started")
        grandchild = int(wait_for(lambda: _read(Path(started.data["data_dir"]) / "grandchild.pid"), 10, "pid"))
        wait_for(lambda: not _alive(grandchild), 20, "the worker's process group to be gone")
        after = client.run("rows_demo", {"participant": "after", "n_trials": 2})  # a fresh worker serves
        assert after.wait(120).data["outcome"] == "completed"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_pipelined_requests_and_a_crowd_never_deadlock_and_sigterm_still_works(tmp_path):
    """~1,000 pipelined requests or 500 simultaneous connections once deadlocked server and worker."""
    root = make_root(tmp_path)
    process, banner = start_serve(root, tmp_path / "data", "--token", TOKEN)
    url = banner["WebSocket"]
    try:
        async def pipelined(n: int) -> dict[str, int]:
            async with aconnect(url, **RAW_OPTIONS) as ws:
                await ws.recv()
                await ws.send(json.dumps({"v": 1, "type": "auth", "token": TOKEN}))
                await ws.recv()
                await ws.send(json.dumps({"v": 1, "type": "request", "id": "run", "cmd": "run",
                                          "args": {"key": "rows_demo",
                                                   "exp_info": {"participant": "busy", "n_trials": 20000}}}))
                for i in range(n):  # every request sent before any reply is read
                    await ws.send(json.dumps({"v": 1, "type": "request", "id": i, "cmd": "list_experiments"}))
                codes: dict[str, int] = {}
                answered: set[int] = set()
                async with asyncio.timeout(240):
                    while len(answered) < n:
                        data = json.loads(await ws.recv())
                        for message in data if isinstance(data, list) else [data]:
                            if message.get("type") == "reply" and isinstance(message.get("id"), int):
                                answered.add(message["id"])
                                code = "ok" if message["ok"] else message["error"]["code"]
                                codes[code] = codes.get(code, 0) + 1
                return codes

        codes = asyncio.run(pipelined(5000))
        assert sum(codes.values()) == 5000 and set(codes) <= {"ok", "busy"}, codes

        async def crowd(n: int) -> int:
            async def one() -> bool:
                async with aconnect(url, **RAW_OPTIONS) as ws:
                    await ws.recv()
                    await ws.send(json.dumps({"v": 1, "type": "auth", "token": TOKEN, "role": "observer"}))
                    welcome = json.loads(await ws.recv())
                    await ws.send(json.dumps({"v": 1, "type": "request", "id": 1, "cmd": "ping"}))
                    while True:
                        data = json.loads(await ws.recv())
                        for message in data if isinstance(data, list) else [data]:
                            if message.get("type") == "reply":
                                return welcome["type"] == "welcome" and message["ok"]

            async with asyncio.timeout(300):
                results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
            return sum(1 for r in results if r is True)

        assert asyncio.run(crowd(1000)) == 1000
        with Client(url, TOKEN) as client:  # the server and its worker survived all of it
            assert client.ping()["pong"] is True
            assert client.request("get_exp_info") is not None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(60)
        except Exception:  # noqa: BLE001 - the assertion below says what went wrong
            code = None
        if code is None:
            stop_serve(process)
    assert code == 0, "the server did not honour SIGTERM"

