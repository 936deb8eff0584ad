"""No acknowledged data lost: kill -9 the worker, then the whole server, mid-run, for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path


from conftest import TEST_EXPERIMENTS, make_root, read_csv, start_serve, stop_serve
from liaison.client import Client
from liaison.server import ServerConfig, ServerThread

TOKEN = "recovery-token-0123456789"
LONG = {"n_trials": 100_000, "frames_per_trial": 5}


def received_rows(events, run_id):
    return {row["i"] for e in events if e.event == "data_rows" and e.run_id == run_id for row in e.data["rows"]}


def follow(client, run_id, until, timeout=60.0):
    seen = []
    for event in client.events(timeout=timeout):
        seen.append(event)
        if until(event, seen):
            return seen
    raise AssertionError(f"gave up; saw {[e.event for e in seen][-15:]}")


def assert_recovered(run_dir: Path, key: str, acknowledged: set[int], reason_word: str) -> list[dict]:
    assert (run_dir / "STATUS").read_text().strip() == "ABORTED"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["outcome"] == "aborted" and manifest["status"] == "ABORTED"
    assert reason_word in manifest["recovery"]["reason"]
    assert manifest["experiment"]["key"] == key and manifest["exp_info"]["participant"]
    rows = read_csv(run_dir / f"{key}_recovered.csv")
    indices = [int(r["i"]) for r in rows]
    assert acknowledged <= set(indices), f"lost rows {sorted(acknowledged - set(indices))[:10]}"
    assert indices == list(range(len(indices))), "in order, no duplicates, no holes"
    assert manifest["recovery"]["rows_from_journal"] == len(rows)
    return rows


def test_worker_killed_mid_run(tmp_path):
    data_dir = tmp_path / "data"
    config = ServerConfig(root=make_root(tmp_path, examples=False), port=0, token=TOKEN, data_dir=data_dir,
                          window={"size": [320, 240], "frame_rate": 60})
    thread = ServerThread(config)
    with thread as server, Client(thread.url, TOKEN) as client:
        run = client.run("frames_demo", {"participant": "kill-worker", **LONG})
        seen = follow(client, run.run_id, lambda e, s: len(received_rows(s, run.run_id)) >= 20)
        os.kill(server.link.host.process.pid, signal.SIGKILL)
        seen += follow(client, run.run_id, lambda e, s: e.event == "run_recovered" and e.run_id == run.run_id)
        end = next(e for e in seen if e.event in ("run_finished", "run_failed") and e.run_id == run.run_id)
        assert end.data["outcome"] == "aborted"
        acknowledged = received_rows(seen, run.run_id)
        rows = assert_recovered(data_dir / "runs" / run.run_id, "frames_demo", acknowledged, "worker")
        recovered = next(e for e in seen if e.event == "run_recovered")
        assert recovered.data["rows"] == len(rows) and "frames_demo_recovered.csv" in recovered.data["data_files"]
        record = client.get_run(run.run_id)
        assert record["outcome"] == "aborted" and "frames_demo_recovered.csv" in record["data_files"]
        again = client.run("frames_demo", {"participant": "after", "n_trials": 2, "frames_per_trial": 2})
        assert again.wait(timeout=120).data["outcome"] == "completed"


def serve(root: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:
    process, banner = start_serve(root, data_dir, "--token", TOKEN)
    return process, banner["WebSocket"]


def test_server_killed_mid_run_then_restarted(tmp_path):
    root = make_root(tmp_path, examples=False)
    data_dir = tmp_path / "data"
    first, url = serve(root, data_dir)
    try:
        with Client(url, TOKEN, reconnect=False) as client:
            client.set_exp_info({"session": "007"})  # between runs: a session param
            shutil.copy(TEST_EXPERIMENTS / "frames_demo.py", root / "fixtures" / "late.py")
            client.add_experiment("fixtures/late.py", key="late_arrival")
            run = client.run("frames_demo", {"participant": "kill-server", **LONG})
            seen = follow(client, run.run_id, lambda e, s: len(received_rows(s, run.run_id)) >= 20)
            first.send_signal(signal.SIGKILL)
            seen += list(client.events(timeout=10))  # whatever was already on its way
        acknowledged = received_rows(seen, run.run_id)
        last_seen = max(e.seq for e in seen)
    finally:
        first.kill()
        first.wait(30)

    second, url = serve(root, data_dir)
    try:
        with Client(url, TOKEN, since=last_seen) as client:
            assert client.welcome["last_seq"] > last_seen, "numbering goes on from the journal"
            record = client.get_run(run.run_id)
            assert record["status"] == "ended" and record["outcome"] == "aborted"
            assert [r["run_id"] for r in client.list_runs()] == [run.run_id], "history survives"
            rows = assert_recovered(data_dir / "runs" / run.run_id, "frames_demo", acknowledged, "server")
            assert record["rows"] >= len(rows)
            replayed = follow(client, run.run_id, lambda e, s: e.event == "run_recovered", timeout=10)
            assert [e.event for e in replayed if e.run_id == run.run_id][-2:] == ["run_finished", "run_recovered"]
            assert client.get_exp_info()["session"] == "007", "session params survive"
            assert "late_arrival" in {e["key"] for e in client.list_experiments()}, "added experiments too"
            nxt = client.run("late_arrival", {"participant": "next", "n_trials": 2, "frames_per_trial": 2})
            end = nxt.wait(timeout=120)
            assert end.data["outcome"] == "completed"
            assert read_csv(Path(client.get_run(nxt.run_id)["data_dir"]) / "data" /
                            next(f.split("/")[-1] for f in end.data["data_files"] if f.endswith(".csv")))[0][
                "session"] == "007"
    finally:
        stop_serve(second)
