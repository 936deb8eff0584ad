"""The liaison server over real loopback WebSockets, running real experiments."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import read_csv, run_csv
from liaison.client import Client, Conflict, Forbidden, Unauthorized
from rawclient import raw_session

SMALL = {"n_trials": 3, "frames_per_trial": 2}
LONG = {"n_trials": 100_000, "frames_per_trial": 10}


def collect(client, until, timeout=60.0):
    """Events from ``client`` until ``until(event)`` is true (inclusive)."""
    seen = []
    for event in client.events(timeout=timeout):
        seen.append(event)
        if until(event):
            return seen
    raise AssertionError(f"condition not met; saw {[e.event for e in seen][-20:]}")


def wait_status(client, status, run_id=None, timeout=60.0):
    return collect(client, lambda e: e.event == "status" and e.data.get("status") == status
                   and (run_id is None or e.data.get("run_id") == run_id), timeout)


def test_scripted_run_through_the_client(server):
    with Client(server.url, server.token) as client:
        assert client.welcome["role"] == "controller"
        assert any(e["key"] == "frames_demo" for e in client.list_experiments())
        run = client.run("frames_demo", {"participant": "scripted", **SMALL})
        end = run.wait(timeout=60)
        assert end.event == "run_finished" and end.data["outcome"] == "completed"
        assert [r["trial_value"] for r in run.rows] == [0, 10, 20]
        record = client.get_run(run.run_id)
        assert record["outcome"] == "completed" and record["rows"] == 3
        rows = read_csv(run_csv(record["data_dir"]))
        assert [r["trial_value"] for r in rows] == ["0", "10", "20"]
        assert client.list_runs()[0]["run_id"] == run.run_id


def test_second_client_controls_while_first_watches(server):
    with Client(server.url, server.token, role="observer") as watcher, \
            Client(server.url, server.token) as controller:
        run = controller.run("frames_demo", {"participant": "two-clients", **LONG})
        wait_status(watcher, "running", run.run_id)
        controller.pause()
        assert controller.state()["status"] == "paused"
        with pytest.raises(Conflict):
            controller.pause()
        controller.resume()
        controller.set_exp_info({"block": "B2"})
        controller.add_data("operator", "checked electrodes")
        controller.annotate("participant asked a question")
        trials = controller.trials(n=2)
        assert trials["current"]["data"]["i"] >= 0 and len(trials["future"]) == 2
        controller.stop()
        seen = collect(watcher, lambda e: e.event in ("run_finished", "run_failed") and e.run_id == run.run_id)
        kinds = [e.event for e in seen if e.run_id == run.run_id]
        for kind in ("run_paused", "run_resumed", "exp_info_changed", "data_added", "annotation",
                     "run_stopping", "run_finished"):
            assert kind in kinds, kinds
        assert seen[-1].data["outcome"] == "stopped"
        rows = read_csv(run_csv(controller.get_run(run.run_id)["data_dir"]))
        assert any(r.get("block") == "B2" for r in rows)
        assert any(r.get("operator") == "checked electrodes" for r in rows)
        assert any("participant asked a question" in (r.get("notes") or "") for r in rows)


def test_abort_kills_a_hung_run_and_the_server_serves_the_next(server):
    with Client(server.url, server.token, role="observer") as watcher, \
            Client(server.url, server.token) as controller:
        run = controller.run("hangs_demo")
        collect(watcher, lambda e: e.event == "data_rows" and e.run_id == run.run_id)
        result = controller.abort(grace=1.0)
        assert (result.run_id, result.killed) == (run.run_id, True)
        end = collect(watcher, lambda e: e.event in ("run_finished", "run_failed") and e.run_id == run.run_id)[-1]
        assert end.data["outcome"] == "aborted"
        again = controller.run("frames_demo", {"participant": "after-abort", **SMALL})
        assert again.wait(timeout=60).data["outcome"] == "completed"


def test_observer_reads_but_cannot_command(server):
    with Client(server.url, server.token, role="observer") as observer:
        assert observer.state()["status"] in ("idle", "running", "starting")
        assert [r.run_id for r in observer.list_runs()] == [r["run_id"] for r in server.journal.runs(50)]
        for call in (lambda: observer.run("frames_demo"), observer.pause, observer.stop,
                     lambda: observer.annotate("hi"), lambda: observer.set_exp_info({"a": "b"})):
            with pytest.raises(Forbidden):
                call()
        me = observer.welcome["client_id"]
        observer.ping()  # a read after the refusals: journalled within the flush interval

    def journalled():
        return [(c["cmd"], c["role"]) for c in server.journal.commands(500) if c["client_id"] == me]

    deadline = time.monotonic() + 10
    while ("ping", "observer") not in journalled() and time.monotonic() < deadline:
        time.sleep(0.01)
    journalled = journalled()
    assert ("pause", "observer") in journalled and ("run", "observer") in journalled, "refusals are on record"
    assert ("state", "observer") in journalled and ("list_runs", "observer") in journalled
    assert journalled[0] == ("ping", "observer"), "newest first, the read included"


def test_missing_or_wrong_token_is_refused(server):
    for token in (None, "wrong-token"):
        with pytest.raises(Unauthorized):
            with Client(server.url, token, reconnect=False):
                pass
    with connect(server.url) as raw:
        json.loads(raw.recv(10))
        raw.send(json.dumps({"v": 1, "type": "auth", "token": "nope"}))
        reply = json.loads(raw.recv(10))
        assert reply["error"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                raw.recv(10)
    assert closed.value.rcvd.code == 4001


def test_request_before_auth_and_auth_deadline(server):
    raw = connect(server.url)
    json.loads(raw.recv(10))
    raw.send(json.dumps({"v": 1, "type": "request", "id": 9, "cmd": "state", "args": {}}))
    reply = json.loads(raw.recv(10))
    assert reply["id"] == 9 and reply["error"]["code"] == "unauthorized"


def test_foreign_origin_is_refused_same_origin_accepted(server):
    with pytest.raises(InvalidStatus) as refused:
        with connect(server.url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    port = server.port
    with raw_session(server.url, server.token, origin=f"http://127.0.0.1:{port}") as ok:
        assert ok.welcome["type"] == "welcome"


def test_bad_messages_get_typed_errors_and_the_connection_survives(server):
    with raw_session(server.url, server.token) as raw:
        bad_messages(raw)


def bad_messages(raw):
    raw.ws.send("{not json")
    assert raw.reply_to(None)["error"]["code"] == "invalid_json"
    raw.ws.send(json.dumps({"v": 1, "type": "request", "id": "u1", "cmd": "fly", "args": {}}))
    assert raw.reply_to("u1")["error"]["code"] == "unknown_command"
    raw.ws.send(json.dumps({"v": 1, "type": "request", "id": "t1", "cmd": "skip_trials", "args": {"n": "two"}}))
    reply = raw.reply_to("t1")
    assert reply["error"]["code"] == "invalid_args"
    assert any("n" in [str(p) for p in d["loc"]] for d in reply["error"]["details"])
    raw.ws.send(json.dumps({"v": 1, "type": "request", "id": "big", "cmd": "annotate",
                            "args": {"text": "x" * (2 << 20)}}))
    assert raw.reply_to(None)["error"]["code"] == "too_large"
    raw.ws.send(json.dumps([1, 2, 3]))
    assert raw.reply_to(None)["error"]["code"] == "invalid_message"
    raw.ws.send(json.dumps({"v": 1, "type": "request", "id": "nf", "cmd": "run", "args": {"key": "nope"}}))
    assert raw.reply_to("nf")["error"]["code"] == "not_found"
    raw.ws.send(json.dumps({"v": 1, "type": "request", "id": "c1", "cmd": "resume", "args": {}}))
    assert raw.reply_to("c1")["error"]["code"] == "conflict"
    assert raw.request("ping", request_id="alive")["ok"] is True


def test_reconnect_with_since_replays_every_missed_event_in_order(server):
    with Client(server.url, server.token, role="observer") as steady, \
            Client(server.url, server.token) as controller:
        with raw_session(server.url, server.token, role="observer") as first:
            start_seq = first.welcome["last_seq"]
            run = controller.run("frames_demo", {"participant": "replay", "n_trials": 30, "frames_per_trial": 3})
            received = []
            while len(received) < 5:
                received.extend(m for m in first.messages() if m.get("type") == "event")
        end = run.wait(timeout=60)  # disconnected mid-run
        with raw_session(server.url, server.token, role="observer", since=received[-1]["seq"]) as reconnected:
            assert reconnected.welcome["replay"] == "full"
            while not any(m["seq"] >= end.seq for m in received):
                received.extend(m for m in reconnected.messages() if m.get("type") == "event")
        expected = [e.seq for e in collect(steady, lambda e: e.seq >= end.seq)]
        got = [m["seq"] for m in received if m["seq"] <= end.seq]
        assert got == sorted(set(got)), "in order, no duplicates"
        assert got == [s for s in expected if s > start_seq], "nothing missed"


def test_slow_client_is_cut_while_a_fast_one_gets_everything(server):
    with raw_session(server.url, server.token, role="observer", max_queue=1) as slow:
        with Client(server.url, server.token) as fast:
            text = "y" * 9_000  # near the 10,000-character limit of a note
            n = 3000
            for i in range(n):
                fast.annotate(f"{i}:{text}")
            notes = []
            for event in fast.events(timeout=30):
                if event.event == "annotation" and event.data["text"].endswith(text):
                    notes.append(int(event.data["text"].split(":", 1)[0]))
                    if len(notes) == n:
                        break
            assert notes == list(range(n))
        closed = None
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                slow.ws.recv(5)
        except ConnectionClosed as exc:
            closed = exc
        except TimeoutError:
            pass
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 4008


def test_dashboard_files_and_downloads_are_served(server):
    import urllib.request
    from urllib.error import HTTPError

    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        assert response.read() == b"ok\n"
    with Client(server.url, server.token) as client:
        run = client.run("frames_demo", {"participant": "dl", **SMALL})
        end = run.wait(timeout=60)
        csv_name = next(f for f in end.data["data_files"] if f.endswith(".csv"))
    url = f"{base}/api/runs/{run.run_id}/files/{csv_name}"
    with pytest.raises(HTTPError) as denied:
        urllib.request.urlopen(url, timeout=10)
    assert denied.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/csv")
        assert b"trial_value" in response.read()
    escape = urllib.request.Request(f"{base}/api/runs/{run.run_id}/files/..%2F..%2F..%2Fetc%2Fpasswd",
                                    headers={"Authorization": f"Bearer {server.token}"})
    with pytest.raises(HTTPError) as outside:
        urllib.request.urlopen(escape, timeout=10)
    assert outside.value.code == 404


def test_client_with_since_hands_over_the_replay_to_its_first_event_iterator(server):
    with Client(server.url, server.token) as controller:
        since = controller.ping()["last_seq"]
        run = controller.run("frames_demo", {"participant": "since", **SMALL})
        end = run.wait(timeout=60)
    with Client(server.url, server.token, role="observer", since=since) as late:
        deadline = time.monotonic() + 30  # the replay has arrived before anyone iterates
        while (late.last_seq or 0) < end.seq and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = collect(late, lambda e: e.seq >= end.seq, timeout=10)
    assert [e.seq for e in seen] == list(range(since + 1, end.seq + 1))
    assert seen[-1].event == "run_finished" and seen[-1].run_id == run.run_id


def test_a_slow_download_never_holds_up_other_clients(server, monkeypatch):
    """4 parallel 100 MB downloads once stalled every client: files were read on the event loop.

    A disk that slow cannot be made here, so reading one file is held (mocked) until the test has
    seen a ping answered meanwhile; read on the loop, the ping could never be answered.
    """
    import pathlib
    import threading
    import urllib.request

    with Client(server.url, server.token) as client:
        end = client.run("frames_demo", {"participant": "slowdisk", **SMALL}).wait(timeout=60)
        folder = pathlib.Path(client.get_run(end.data["run_id"])["data_dir"])
        (folder / "slow.bin").write_bytes(b"x" * 1000)
        answered, reading = threading.Event(), threading.Event()
        original = pathlib.Path.read_bytes

        def slow_read(self):
            if self.name == "slow.bin":
                reading.set()
                answered.wait(20)  # a slow disk, until the rest of the server has been seen to work
            return original(self)

        monkeypatch.setattr(pathlib.Path, "read_bytes", slow_read)
        url = f"http://127.0.0.1:{server.port}/api/runs/{end.data['run_id']}/files/slow.bin"
        results: list = []

        def download():
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.token}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                results.append(response.read())

        threads = [threading.Thread(target=download) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            assert reading.wait(20), "the downloads reached the server"
            assert client.request("ping", timeout=5)["pong"] is True, "answered while the files are read"
            assert not results, "and before any download finished"
        finally:
            answered.set()
            for thread in threads:
                thread.join(30)
    assert results == [b"x" * 1000] * 4
