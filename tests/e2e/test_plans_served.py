"""Session plans on a real server: counterbalanced orders, dry runs, and resuming after kill -9.

Each test starts ``liaison serve`` as a real process on loopback, so the
plan's journal, the worker and the recovery are the ones users get.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import liaison_command, make_root, read_csv, run_csv, start_serve, stop_serve
from liaison.client import Client

FAST = {"rt_mean": 0.05, "rt_sd": 0.01, "p_correct": 0.9}

PLAN_3x2 = """
name = "three by two"
participants = { pattern = "S{n:02d}", count = 3 }
seed = 100

[counterbalance]
method = "latin_square"

[[experiments]]
key = "rt_demo"
exp_info = { n_trials = 2 }

[[experiments]]
key = "mouse_slider"

[participant_info.S03]
session = "007"

[between_participants]
kind = "timed"
seconds = 0.2
"""


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    return subprocess.run([*liaison_command(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def wait_plan(client: Client, done, timeout: float) -> dict:
    """Plan state once ``done(state)`` holds (polled; bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.plan_state()
        if done(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"plan condition not met within {timeout} s: {client.plan_state()}")


def run_steps(state: dict) -> list[dict]:
    return [s for s in state["steps"] if s["kind"] == "run"]


def test_counterbalanced_plan_runs_to_its_end_with_the_expected_orders(tmp_path):
    root = make_root(tmp_path)
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(PLAN_3x2)
    process, banner = start_serve(root, tmp_path / "data", "--no-auth")
    try:
        url = banner["WebSocket"]
        started = time.monotonic()
        done = cli("plan", "run", url, str(plan_file), "--simulate", "--sim", "rt_mean=0.05", "--sim", "rt_sd=0.01")
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert "dry run" in done.stdout and "plan finished" in done.stdout
        with Client(url) as client:
            state = client.plan_state()
            runs = {r["run_id"]: r for r in client.list_runs(100)}
    finally:
        stop_serve(process)
    assert state["status"] == "finished"
    steps = run_steps(state)
    orders = {}
    for step in steps:
        orders.setdefault(step["participant"], []).append(step["key"])
    assert orders == {"S01": ["rt_demo", "mouse_slider"], "S02": ["mouse_slider", "rt_demo"],
                      "S03": ["rt_demo", "mouse_slider"]}  # Latin square rows 0, 1, 0
    assert [s["kind"] for s in state["steps"]].count("break") == 2
    for step in steps:
        assert step["status"] == "done"
        [attempt] = step["attempts"]
        assert attempt["outcome"] == "completed"
        record = runs[attempt["run_id"]]
        assert record["outcome"] == "completed" and record["exp_info"]["participant"] == step["participant"]
        assert record["exp_info"]["simulated"] is True
        data_dir = Path(record["data_dir"])
        manifest = json.loads((data_dir / "manifest.json").read_text())
        assert manifest["simulated"] is True
        assert manifest["plan"]["plan_id"] == state["plan_id"] and manifest["plan"]["step"] == step["index"]
        assert manifest["plan"]["cell"]["order"] == orders[step["participant"]]
        assert manifest["plan"]["cell"]["position"] == orders[step["participant"]].index(step["key"])
        rows = read_csv(run_csv(data_dir))
        assert rows and all(r["participant"] == step["participant"] for r in rows)
        if step["participant"] == "S03":
            assert rows[0]["session"] == "007"  # participant_info reaches the data
    assert state["participants"] == {p: {"runs": 2, "done": 2} for p in ("S01", "S02", "S03")}
    print(f"3x2 plan: {elapsed:.1f} s")


PLAN_RESUME = """
name = "resume"
participants = ["A", "B"]

[[experiments]]
key = "frames_demo"
exp_info = { n_trials = 3, frames_per_trial = 5 }

[[experiments]]
key = "rt_demo"
exp_info = { n_trials = 25 }

[on_failure]
interrupted = "rerun"
"""


def test_a_plan_interrupted_by_kill_9_resumes_at_the_right_step(tmp_path):
    root = make_root(tmp_path)
    data = tmp_path / "data"
    process, banner = start_serve(root, data, "--no-auth")
    try:
        with Client(banner["WebSocket"]) as client:
            client.plan_start(PLAN_RESUME)
            # kill the server while step 1 (A's rt_demo: 25 trials of 0.3 s) is under way, rows recorded
            state = wait_plan(client, lambda s: s["cursor"] == 1 and s["steps"][1]["attempts"], 120)
            interrupted = state["steps"][1]["attempts"][0]["run_id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                record = next((r for r in client.list_runs(10) if r["run_id"] == interrupted), None)
                if record and record["rows"] >= 2:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the run to interrupt never recorded rows")
            first_done = state["steps"][0]["attempts"][0]["run_id"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    process, banner = start_serve(root, data, "--no-auth")
    try:
        with Client(banner["WebSocket"]) as client:
            state = wait_plan(client, lambda s: s["status"] in ("finished", "stopped", "cancelled"), 240)
            runs = {r["run_id"]: r for r in client.list_runs(100)}
    finally:
        stop_serve(process)
    assert state["status"] == "finished", state["message"]
    steps = run_steps(state)
    assert [(s["participant"], s["key"]) for s in steps] == [
        ("A", "frames_demo"), ("A", "rt_demo"), ("B", "frames_demo"), ("B", "rt_demo")]
    # step 0 ran once, before the crash; it was not run again
    assert [a["run_id"] for a in steps[0]["attempts"]] == [first_done]
    # step 1: the interrupted attempt recorded as aborted, then exactly one re-run that completed
    first, second = steps[1]["attempts"]
    assert first["run_id"] == interrupted and first["outcome"] == "aborted" and first["interrupted"]
    assert second["outcome"] == "completed"
    assert runs[interrupted]["outcome"] == "aborted"
    assert (Path(runs[interrupted]["data_dir"]) / "STATUS").read_text().strip() == "ABORTED"
    kept = [read_csv(p) for p in Path(runs[interrupted]["data_dir"]).rglob("*.csv")]  # its own and/or recovered
    assert any(len(rows) >= 2 for rows in kept), "the interrupted run's rows were kept"
    for step in steps[2:]:
        assert [a["outcome"] for a in step["attempts"]] == ["completed"]
    # nothing duplicated: one completed run folder per step, plus the aborted one
    folders = [p for p in (data / "runs").iterdir() if p.is_dir()]
    statuses = sorted((p / "STATUS").read_text().strip() for p in folders)
    assert statuses == ["ABORTED", "FINISHED", "FINISHED", "FINISHED", "FINISHED"]
    completed_ids = {a["run_id"] for s in steps for a in s["attempts"] if a["outcome"] == "completed"}
    assert len(completed_ids) == 4 and completed_ids <= set(runs)


def test_plan_commands_pause_continue_skip_cancel_and_bad_plans(tmp_path):
    root = make_root(tmp_path)
    process, banner = start_serve(root, tmp_path / "data", "--no-auth")
    try:
        url = banner["WebSocket"]
        with Client(url) as client:
            assert client.plan_state() == {"status": "none"}
            from liaison.client import LiaisonError

            for text, words in (("name = ", "not valid TOML"),
                                ('name = "x"\nparticipants = ["a"]\n[[experiments]]\nkey = "nope"\n', "nope"),
                                ('name = "x"\nparticipants = ["a", "a"]\n[[experiments]]\nkey = "rt_demo"\n',
                                 "distinct"),
                                ('name = "x"\nparticipants = ["a"]\nexperimentz = 1\n', "experimentz")):
                try:
                    client.plan_start(text)
                except LiaisonError as exc:
                    assert words in exc.message, exc.message
                else:
                    raise AssertionError(f"plan accepted: {text!r}")
            plan = ('name = "controls"\nparticipants = ["a", "b", "c"]\n'
                    '[[experiments]]\nkey = "rt_demo"\nexp_info = { n_trials = 40 }\n'
                    # a's run is skipped and c's cancelled below: long enough to be found running
                    '[participant_info.a]\nn_trials = 100000\n[participant_info.c]\nn_trials = 100000\n'
                    '[between_participants]\nkind = "continue"\nmessage = "next!"\n')
            client.plan_start(plan)
            try:
                client.plan_start(plan)
            except LiaisonError as exc:
                assert exc.code == "busy"
            else:
                raise AssertionError("a second plan was accepted while one runs")
            wait_plan(client, lambda s: s["steps"][0]["status"] == "running", 60)
            assert client.plan_pause()["status"] == "pausing"
            state = client.plan_skip()  # stops a's run: the step is skipped, then the plan pauses
            state = wait_plan(client, lambda s: s["status"] == "paused", 60)
            assert state["steps"][0]["status"] == "skipped" and state["cursor"] == 1
            client.plan_continue()
            state = wait_plan(client, lambda s: s["status"] == "waiting", 30)  # the break before b
            assert "next!" in state["message"]
            client.plan_continue()
            wait_plan(client, lambda s: s["cursor"] == 2 and s["steps"][2]["status"] == "running", 60)
            state = client.plan_cancel()
            assert state["status"] == "cancelled"
            state = wait_plan(client, lambda s: s["steps"][2]["status"] == "cancelled", 60)
            assert [s["status"] for s in state["steps"]] == ["skipped", "done", "cancelled", "pending", "pending"]
            deadline = time.monotonic() + 30  # b's run was stopped, and nothing else starts
            while client.state()["status"] != "idle" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.state()["status"] == "idle"
            assert client.plan_state()["cursor"] == 3
    finally:
        stop_serve(process)
