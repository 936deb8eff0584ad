"""`liaison serve --priority realtime`: a busy-looping experiment (unpaced flips under Xvfb) on a
real-time thread must not starve the server, the worker's pipe reader or signal delivery."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import make_root, start_serve, stop_serve
from liaison.client import Client
from session.records import read_manifest, read_status

BUSY = {"n_trials": 100_000, "frames_per_trial": 20}  # unpaced: as many flips as the CPU allows


def realtime_permitted() -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            os._exit(0)
        except OSError:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="realtime is only granted with two or more cores")
def test_a_busy_realtime_experiment_leaves_the_server_the_pipe_and_sigterm_working(tmp_path):
    if not realtime_permitted():
        pytest.skip("SCHED_RR is not permitted here (tests/unit/test_priority.py covers the fallback)")
    root, data = make_root(tmp_path, examples=False), tmp_path / "data"
    token = "test-token-rt-000001"
    process, banner = start_serve(root, data, "--priority", "realtime", "--token", token)
    try:
        url = banner["WebSocket"]
        with Client(url, token) as client:
            run = client.run("frames_demo", BUSY)
            run_dir = Path(wait_for(lambda: next((e.data["data_dir"] for e in client.events(timeout=30)
                                                  if e.event == "run_started" and e.run_id == run.run_id),
                                                 None), 60, "run_started"))
            manifest = read_manifest(run_dir)
            assert manifest["priority"]["obtained"] == "realtime", manifest["priority"]
            assert manifest["priority"]["policy"] == "SCHED_RR"
            worker_pid = manifest["worker_pid"]
            assert os.sched_getscheduler(worker_pid) & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
            time.sleep(0.5)  # let it spin
            for cmd in ("ping", "get_exp_info"):  # the server; the worker's receiver thread
                started = time.monotonic()
                client.request(cmd, timeout=10)
                assert time.monotonic() - started < 2.0, f"{cmd} starved"
            started = time.monotonic()
            client.pause()
            assert time.monotonic() - started < 2.0, "pause starved"
            client.resume()
        assert read_status(run_dir) == "RUNNING"
        started = time.monotonic()
        code = stop_serve(process, timeout=60)  # SIGTERM while the experiment spins
        assert code == 0 and time.monotonic() - started < 30
        assert read_status(run_dir) in ("STOPPED", "ABORTED") and list(run_dir.glob("data/*.csv"))
        with pytest.raises(ProcessLookupError):
            wait_for(lambda: os.kill(worker_pid, 0), 10, "the worker to exit")
    finally:
        stop_serve(process)
