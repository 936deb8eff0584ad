"""The worker process: a Session in a child, commanded and supervised over a pipe."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import make_root, read_csv, run_csv
from session.worker import WorkerConfig, WorkerDied, WorkerError, WorkerHost


class EventLog:
    """Collects the host's events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events = []
        self._cond = threading.Condition()

    def __call__(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event in {timeout} s; saw {[e.type for e in self.events][-20:]}")
                self._cond.wait(remaining)

    def of_run(self, run_id):
        with self._cond:
            return [e for e in self.events if getattr(e, "run_id", None) == run_id]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    base = tmp_path_factory.mktemp("worker")
    root = make_root(base)
    log = EventLog()
    config = WorkerConfig(root=str(root), data_dir=str(base / "data"),
                          window={"size": [640, 480], "frame_rate": 60})
    worker = WorkerHost(config)
    worker.events.subscribe(log)
    worker.start(timeout=120)
    worker.log = log
    yield worker
    worker.shutdown()


def run_to_end(host, key, exp_info=None, timeout=120):
    started = host.request("start_run", key=key, exp_info=exp_info or {})
    run_id = started["run_id"]
    end = host.log.wait_for(lambda e: getattr(e, "run_id", None) == run_id
                            and e.type in ("run_finished", "run_failed"), timeout)
    return run_id, end


def test_worker_lists_experiments(host):
    keys = {e["key"] for e in host.request("list_experiments")}
    assert {"frames_demo", "raises_demo", "hangs_demo"} <= keys
    assert host.request("ping")["pid"] == host.process.pid != os.getpid()


@pytest.mark.parametrize("key", ["stroop_lite", "rt_demo"])
def test_examples_run_end_to_end_with_events_streamed(host, key):
    run_id, end = run_to_end(host, key, {"participant": f"ci-{key}"})
    assert end.type == "run_finished" and end.outcome == "completed", end
    events = host.log.of_run(run_id)
    streamed = [row for e in events if e.type == "data_rows" for row in e.rows]
    assert streamed, "data rows must stream to the parent while the run goes"
    started = next(e for e in events if e.type == "run_started")
    csv_rows = read_csv(run_csv(started.data_dir))
    assert len(csv_rows) == len(streamed) == end.rows
    assert all(r["participant"] == f"ci-{key}" for r in csv_rows if r.get("participant"))


def test_control_commands_apply_while_run_holds_the_main_thread(host):
    started = host.request("start_run", key="frames_demo",
                           exp_info={"participant": "wctl", "n_trials": 1000, "frames_per_trial": 10})
    run_id = started["run_id"]
    host.log.wait_for(lambda e: e.type == "status" and e.status == "running" and e.run_id == run_id)
    with pytest.raises(WorkerError) as busy:
        host.request("start_run", key="frames_demo")
    assert busy.value.code == "busy"
    latency = host.request("pause", timeout=10)
    assert latency >= 0
    assert host.request("status") == "paused"
    host.request("add_data", name="worker_note", value=7)
    host.request("annotate", text="via worker")
    assert host.request("current_trial")["data"]["i"] >= 0
    host.request("resume")
    host.request("stop")
    end = host.log.wait_for(lambda e: getattr(e, "run_id", None) == run_id and e.type == "run_finished")
    assert end.outcome == "stopped"
    started_event = next(e for e in host.log.of_run(run_id) if e.type == "run_started")
    rows = read_csv(run_csv(started_event.data_dir))
    assert any(r.get("worker_note") == "7" for r in rows)
    assert any("via worker" in (r.get("notes") or "") for r in rows)


def test_failing_experiment_event_carries_key_and_traceback(host):
    run_id, end = run_to_end(host, "raises_demo")
    assert end.type == "run_failed" and end.key == "raises_demo"
    assert "deliberate failure" in end.traceback
    run_id, end = run_to_end(host, "frames_demo", {"n_trials": 1, "frames_per_trial": 1})
    assert end.outcome == "completed"


def test_errors_come_back_typed(host):
    with pytest.raises(WorkerError) as err:
        host.request("start_run", key="no_such_experiment")
    assert err.value.code == "not_found"
    with pytest.raises(WorkerError) as err:
        host.request("pause")
    assert err.value.code == "conflict"
    with pytest.raises(WorkerError) as err:
        host.request("add_experiment", path="../outside.py")
    assert err.value.code == "forbidden"
    with pytest.raises(WorkerError) as err:
        host.request("no_such_command")
    assert err.value.code == "unknown_command"


def test_hung_run_is_killed_and_a_fresh_worker_serves_the_next(host):
    old_pid = host.process.pid
    started = host.request("start_run", key="hangs_demo")
    run_id = started["run_id"]
    host.log.wait_for(lambda e: getattr(e, "run_id", None) == run_id and e.type == "data_rows")
    outcome = host.abort(grace=1.0, timeout=120)
    assert outcome == {"run_id": run_id, "killed": True}
    end = host.log.wait_for(lambda e: getattr(e, "run_id", None) == run_id
                            and e.type in ("run_finished", "run_failed"))
    assert end.type == "run_finished" and end.outcome == "aborted" and end.rows == 1
    assert host.process.pid != old_pid and host.alive
    _, end = run_to_end(host, "frames_demo", {"n_trials": 2, "frames_per_trial": 2})
    assert end.outcome == "completed"


def test_worker_death_is_detected_and_reported(host):
    started = host.request("start_run", key="frames_demo",
                           exp_info={"n_trials": 1000, "frames_per_trial": 10})
    run_id = started["run_id"]
    host.log.wait_for(lambda e: e.type == "status" and e.status == "running" and e.run_id == run_id)
    pending = host.submit("current_trial")
    os.kill(host.process.pid, signal.SIGKILL)
    end = host.log.wait_for(lambda e: getattr(e, "run_id", None) == run_id and e.type == "run_finished")
    assert end.outcome == "aborted" and "died" in host.lost_runs[run_id] and "-9" in host.lost_runs[run_id]
    host.log.wait_for(lambda e: e.type == "status" and e.status == "worker_exited")
    if not pending.done() or pending.exception() is not None:
        with pytest.raises(WorkerDied):
            pending.result(10)
    assert not host.alive
    with pytest.raises(WorkerDied):
        host.request("ping")
    host.restart(timeout=120)
    assert host.request("ping")["pid"] == host.process.pid


def test_worker_starts_when_the_parent_set_a_default_socket_timeout(tmp_path):
    """PsychoPy's ``psychopy.web`` calls ``socket.setdefaulttimeout``; new socket
    pairs are then non-blocking and the child used to read EAGAIN and exit."""
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        worker = WorkerHost(WorkerConfig(root=str(make_root(tmp_path)), data_dir=str(tmp_path / "data"),
                                         window={"size": [320, 240], "frame_rate": 60}))
        worker.start(timeout=120)
    finally:
        socket.setdefaulttimeout(previous)
    try:
        time.sleep(0.5)  # the old failure came just after "ready"
        assert worker.alive
        assert worker.request("ping")["pid"] == worker.process.pid
    finally:
        worker.shutdown()


def test_a_run_s_output_and_record_are_in_its_folder(host):
    run_id, end = run_to_end(host, "frames_demo", {"participant": "out", "n_trials": 2, "frames_per_trial": 2})
    assert end.outcome == "completed"
    started = next(e for e in host.log.of_run(run_id) if e.type == "run_started")
    folder = Path(started.data_dir)
    assert "frames_demo: 2 trials for out" in (folder / "stdout.log").read_text()
    assert "frames_demo: a line on stderr" in (folder / "stderr.log").read_text()
    assert (folder / "STATUS").read_text().strip() == "FINISHED"
    assert {"stdout.log", "stderr.log", "run.log", "manifest.json", "STATUS"} <= set(end.data_files)
    # the worker's own console is back after the run
    assert host.request("ping")["pid"] == host.process.pid


def test_a_backlog_of_row_events_is_merged_without_changing_the_rows():
    from session.events import Annotated, DataRows
    from session.worker import _merge_rows

    def rows(first, n, run="r"):
        return ("event", DataRows(run_id=run, key="k", first_row=first, rows=[{"i": first + k} for k in range(n)]))

    note = ("event", Annotated(run_id="r", text="between"))
    reply = ("reply", 7, True, None)
    merged = _merge_rows([rows(0, 2), rows(2, 1), rows(3, 3), note, rows(6, 1), reply, rows(7, 1), rows(8, 1, run="s")])
    shapes = [(m[0], getattr(m[1], "type", None) if m[0] == "event" else m[1]) for m in merged]
    assert shapes == [("event", "data_rows"), ("event", "annotation"), ("event", "data_rows"), ("reply", 7),
                      ("event", "data_rows"), ("event", "data_rows")]
    assert [r["i"] for r in merged[0][1].rows] == list(range(6)) and merged[0][1].first_row == 0
    assert merged[2][1].first_row == 6 and merged[4][1].first_row == 7 and merged[5][1].run_id == "s"
