"""The ``liaison`` command, run as a real subprocess against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


from conftest import EXAMPLES, liaison_command, make_root, read_csv, run_csv, start_serve, stop_serve
from liaison.client import Client

SMALL = ["-i", "n_trials:=3", "-i", "frames_per_trial:=2"]


def cli(*args: str, token: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    if token is not None:
        env["LIAISON_TOKEN"] = token
    return subprocess.run([*liaison_command(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_experiments_lists_what_a_server_would_find_without_importing(tmp_path):
    result = cli("experiments", str(EXAMPLES), "--json")
    assert result.returncode == 0, result.stderr
    found = {e["key"]: e for e in json.loads(result.stdout)}
    assert found["stroop_lite"]["kind"] == "psyexp" and found["rt_demo"]["kind"] == "py"
    assert found["rt_demo"]["exp_info"]["n_trials"] == 10
    text = cli("experiments", str(EXAMPLES))
    assert text.returncode == 0 and "stroop_lite" in text.stdout and "rt_demo" in text.stdout
    missing = cli("experiments", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_schema_is_the_protocol_json_schema():
    result = cli("schema")
    assert result.returncode == 0, result.stderr
    from liaison.protocol.schema import json_schema

    assert json.loads(result.stdout) == json_schema(), "exactly the schema the protocol's models make"


def test_run_follows_to_the_end_and_the_exit_code_is_the_outcome(server):
    done = cli("run", server.url, "frames_demo", "-i", "participant=cli", *SMALL, token=server.token)
    assert done.returncode == 0, done.stderr
    assert "completed: 3 rows" in done.stdout
    run_id = done.stdout.split()[1]
    with Client(server.url, server.token) as client:
        record = client.get_run(run_id)
    rows = read_csv(run_csv(record["data_dir"]))
    assert [r["participant"] for r in rows] == ["cli"] * 3
    assert [r["n_trials"] for r in rows] == ["3"] * 3, ":= passes a typed value"

    failed = cli("run", server.url, "raises_demo", token=server.token)
    assert failed.returncode == 1
    assert "deliberate failure in raises_demo" in failed.stderr


def test_run_usage_and_connection_errors_exit_2(server):
    bad_pair = cli("run", server.url, "frames_demo", "-i", "no-equals-sign", token=server.token)
    assert bad_pair.returncode == 2 and "key=value" in bad_pair.stderr
    bad_json = cli("run", server.url, "frames_demo", "-i", "n:={oops", token=server.token)
    assert bad_json.returncode == 2 and "must be JSON" in bad_json.stderr
    wrong_token = cli("run", server.url, "frames_demo", token="not-the-token")
    assert wrong_token.returncode == 2 and "unauthorized" in wrong_token.stderr
    nobody = cli("run", "ws://127.0.0.1:9/", "frames_demo", token=server.token)
    assert nobody.returncode == 2 and "cannot connect" in nobody.stderr
    unknown = cli("run", server.url, "no_such_experiment", token=server.token)
    assert unknown.returncode == 1 and "not_found" in unknown.stderr


def test_send_prints_results_and_typed_errors(server):
    state = cli("send", server.url, "state", token=server.token)
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["status"] == "idle"
    conflict = cli("send", server.url, "resume", token=server.token)
    assert conflict.returncode == 1 and "conflict" in conflict.stderr
    invalid = cli("send", server.url, "skip_trials", '{"n": "two"}', token=server.token)
    assert invalid.returncode == 1 and "invalid_args" in invalid.stderr and '"n"' in invalid.stderr
    not_json = cli("send", server.url, "skip_trials", "{n: 2}", token=server.token)
    assert not_json.returncode == 2 and "JSON object" in not_json.stderr
    observer = cli("send", server.url, "pause", "--observer", token=server.token)
    assert observer.returncode == 1 and "forbidden" in observer.stderr


def test_watch_streams_events_as_json_lines(server):
    with Client(server.url, server.token) as client:
        since = client.ping()["last_seq"]  # so the watcher cannot miss what follows, however slow it starts
    watcher = subprocess.Popen(
        [*liaison_command(), "watch", server.url, "--json", "--since", str(since), "--count", "200",
         "--idle-timeout", "20"],
        env={**os.environ, "LIAISON_TOKEN": server.token}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in watcher.stdout),
                              daemon=True)
    reader.start()
    try:
        with Client(server.url, server.token) as client:
            run = client.run("frames_demo", {"participant": "watched", "n_trials": 3, "frames_per_trial": 2})
            run.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                e["event"] == "run_finished" and e["data"]["run_id"] == run.run_id for e in list(lines)):
            time.sleep(0.05)
    finally:
        watcher.terminate()
        watcher.wait(10)
    mine = [e for e in lines if e["data"].get("run_id") == run.run_id]
    kinds = [e["event"] for e in mine if e["event"] != "status"]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished", kinds
    assert sum(len(e["data"]["rows"]) for e in mine if e["event"] == "data_rows") == 3
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(set(seqs)) and seqs[0] == since + 1, "from --since on, in order, no duplicates"


def test_serve_prints_where_and_shuts_down_gracefully_on_sigterm(tmp_path):
    """SIGTERM stops the running experiment, saves its data and says goodbye (1001)."""
    root = make_root(tmp_path, examples=False)
    data_dir = tmp_path / "data"
    process, printed = start_serve(root, data_dir, stderr=subprocess.PIPE)
    try:
        assert {"WebSocket", "Dashboard", "Token"} <= printed.keys(), printed
        url, token = printed["WebSocket"], printed["Token"]
        assert url.startswith("ws://127.0.0.1:"), "binds to loopback by default"
        assert printed["Dashboard"].endswith(f"#token={token}"), "the token goes in the fragment only"
        with Client(url, token, reconnect=False) as client:
            run = client.run("frames_demo", {"participant": "sigterm", "n_trials": 100_000,
                                             "frames_per_trial": 10})
            for event in client.events(timeout=30):
                if event.event == "data_rows" and event.run_id == run.run_id:
                    break
            process.send_signal(signal.SIGTERM)
            end = run.wait(timeout=60)
            assert end.data["outcome"] == "stopped"
            for _ in client.events(timeout=30):
                pass  # drain until the server closes the connection
            assert client._async.goodbye["code"] == 1001
        assert process.wait(60) == 0
        rows = read_csv(run_csv(data_dir / "runs" / run.run_id))
        assert rows and all(r["participant"] == "sigterm" for r in rows)
        logs = process.stderr.read()
        assert token not in logs, "the token is never logged"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_runs_and_offline_recover_on_a_data_folder(tmp_path):
    from liaison.store.datalock import DataDirLock
    from journal_fixtures import a_run, published

    from liaison.store.journal import Journal

    data = tmp_path / "data"
    run_dir = data / "runs" / "r-open"
    run_dir.mkdir(parents=True)
    journal = Journal.in_dir(data)
    published(journal, a_run("r-done", rows=2) + a_run("r-open", rows=3, end=False, data_dir=str(run_dir)))
    journal.close()

    listing = cli("runs", str(data), "--json")
    assert listing.returncode == 0, listing.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listing.stdout)] == [("r-open", "running"),
                                                                                ("r-done", "ended")]
    with DataDirLock(data):
        busy = cli("recover", str(data))
    assert busy.returncode == 2 and "in use" in busy.stderr

    done = cli("recover", str(data))
    assert done.returncode == 0, done.stderr
    assert "r-open: ABORTED, 3 rows rebuilt into demo_recovered.csv" in done.stdout
    assert (run_dir / "demo_recovered.csv").read_text().splitlines()[1:] == ["0,0.5", "1,1.5", "2,2.5"]
    table = cli("runs", str(data))
    assert table.returncode == 0
    line = next(line for line in table.stdout.splitlines() if line.startswith("r-open"))
    assert "ABORTED" in line and line.split()[5] == "3"  # rows (after "0.9 s")
    assert line.split()[-1] == "-", "no timing report: the run never reached its end"
    assert cli("recover", str(data)).stdout.strip() == "nothing to recover"
    assert cli("runs", str(tmp_path)).returncode == 2, "no journal there"


def test_a_second_server_on_the_same_data_folder_is_refused(server):
    busy = cli("serve", str(server.config.root), "--port", "0", "--data-dir", str(server.config.data_dir))
    assert busy.returncode == 2
    assert "in use" in busy.stderr and "--data-dir" in busy.stderr


def xvfb_children(pid: int) -> list[int]:
    """Xvfb processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and name == "Xvfb":
            found.append(int(stat.parent.name))
    return found


def test_without_a_display_the_server_owns_one_xvfb_and_an_abort_leaks_none(tmp_path):
    root = make_root(tmp_path, examples=False)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "LIAISON_TOKEN")}
    process, printed = start_serve(root, tmp_path / "data", "--token", "xvfb-token-1234567890", env=env)
    try:
        url = printed["WebSocket"]
        displays = xvfb_children(process.pid)
        assert len(displays) == 1, "one virtual display, the server's"
        with Client(url, "xvfb-token-1234567890", reconnect=False) as client:
            run = client.run("hangs_demo", {"participant": "xvfb"})
            for event in client.events(timeout=30):
                if event.event == "data_rows" and event.run_id == run.run_id:
                    break
            assert client.abort(grace=0.5)["killed"] is True
            assert run.wait(timeout=60).data["outcome"] == "aborted"
            assert client.run("frames_demo", {"n_trials": 1, "frames_per_trial": 1}).wait(timeout=120)
        assert xvfb_children(process.pid) == displays, "the killed worker left no display behind"
    finally:
        stop_serve(process)
    assert all(not Path(f"/proc/{pid}").exists() for pid in displays), "and it goes with the server"


def test_the_next_server_ends_what_a_killed_one_left_running(tmp_path):
    """After a ``kill -9`` of the server its Xvfb and a worker stuck in a run lived on, forever."""
    root = make_root(tmp_path, examples=False)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "LIAISON_TOKEN")}
    token = "leftover-token-1234567890"
    first, printed = start_serve(root, tmp_path / "data", "--token", token, env=env)
    try:
        (display,) = xvfb_children(first.pid)
        with Client(printed["WebSocket"], token, reconnect=False) as client:
            run = client.run("hangs_demo", {"participant": "left"})  # ignores stop: its worker never exits
            for event in client.events(timeout=30):
                if event.event == "data_rows" and event.run_id == run.run_id:
                    break
        lock = json.loads((tmp_path / "data" / "liaison.lock").read_text())
        assert lock["xvfb_pid"] == display and lock["worker_pid"]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert Path(f"/proc/{display}").exists() and Path(f"/proc/{lock['worker_pid']}").exists(), "orphans"
    finally:
        if first.poll() is None:
            first.kill()
    second, _ = start_serve(root, tmp_path / "data", "--token", token, "--recovery-wait", "1", env=env)
    try:
        deadline = time.monotonic() + 30
        while (_alive(display) or _alive(lock["worker_pid"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(display), "the dead server's Xvfb was ended"
        assert not _alive(lock["worker_pid"]), "and its stuck worker"
    finally:
        stop_serve(second)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
