"""Every run reports its frame timing (real window under Xvfb), and the rig check works end to end."""

from __future__ import annotations

import json
import os

import pytest

from conftest import liaison_command
from session import Session, timing
from session.events import Publisher
from session.records import read_manifest


@pytest.fixture(scope="module")
def recorded(session_root, tmp_path_factory):
    events = []
    publisher = Publisher()
    publisher.subscribe(events.append)
    with Session(session_root, data_dir=tmp_path_factory.mktemp("data"), publisher=publisher,
                 window={"size": (320, 240), "frame_rate": 60, "use_fbo": False}) as s:
        yield s, events


def test_a_slow_frame_is_reported_with_its_trial(recorded, monkeypatch):
    session, events = recorded
    monkeypatch.setattr(timing, "REPORT_EVERY", 0.0)  # a live report at every trial boundary
    result = session.run("slow_frame_demo", {"slow_trial": 2, "slow_ms": 90})
    assert result.outcome == "completed", result.traceback
    report = result.timing
    assert report["frames"] >= 4 * 15 and report["refresh_hz"] == 60.0
    assert report["dropped"] >= 1
    worst = report["worst"][0]
    assert worst["ms"] >= 90 and worst["trial"] == 2, report["worst"]
    assert report["timing_ok"] is False and "trial 2" in report["timing_problem"]
    assert report["gc"]["collections"] >= 0 and "max_in_frames_ms" in report["gc"]

    manifest = read_manifest(result.data_dir)
    assert manifest["timing"]["worst"][0]["trial"] == 2
    assert manifest["priority"]["requested"] in ("normal", "high", "realtime")
    end = [e for e in events if getattr(e, "run_id", None) == result.run_id and e.type == "run_finished"][0]
    assert end.timing_ok is False and "trial 2" in end.timing_problem
    live = [e for e in events if getattr(e, "run_id", None) == result.run_id and e.type == "run_timing"]
    assert live and live[-1].timing["frames"] > 0
    assert "flip" not in vars(session.windows.win)  # the window is itself again after the run


def test_a_run_without_slow_frames_names_no_trial(recorded):
    session, _ = recorded
    result = session.run("slow_frame_demo", {"slow_ms": 0})
    assert result.outcome == "completed", result.traceback
    assert all(w["ms"] < 90 for w in result.timing["worst"])


def test_check_timing_flips_the_session_window(recorded):
    session, _ = recorded
    report = session.check_timing(60)
    assert report["frames"] == 60 and report["requested_frames"] == 60
    assert report["measured_refresh_hz"] and report["jitter_ms"] is not None
    assert report["interval_ms"]["p50"] > 0 and "priority" in report


def test_check_timing_over_the_protocol_and_the_cli(server):
    import subprocess

    done = subprocess.run([*liaison_command(), "check-timing", server.url, "--frames", "50", "--json"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LIAISON_TOKEN": server.token})
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["frames"] == 50 and report["priority"]["requested"] == "high"
    assert done.returncode == (0 if report["timing_ok"] else 1)
    bad = subprocess.run([*liaison_command(), "check-timing", server.url, "--frames", "5"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LIAISON_TOKEN": server.token})
    assert bad.returncode == 1 and "invalid_args" in bad.stderr


def test_liaison_runs_shows_each_runs_timing(server):
    import subprocess

    from liaison.client import Client

    with Client(server.url, server.token) as client:
        run = client.run("slow_frame_demo", {"slow_trial": 3, "slow_ms": 90})
        end = next(e for e in client.events(timeout=60)
                   if e.run_id == run.run_id and e.event in ("run_finished", "run_failed"))
    assert end.data["timing_ok"] is False and "trial 3" in end.data["timing_problem"]
    data_dir = str(server.config.data_dir)
    listing = subprocess.run([*liaison_command(), "runs", data_dir, "--json"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ))
    record = next(r for r in json.loads(listing.stdout) if r["run_id"] == run.run_id)
    assert record["timing"]["worst"][0]["trial"] == 3
    table = subprocess.run([*liaison_command(), "runs", data_dir], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ))
    line = next(line for line in table.stdout.splitlines() if line.startswith(run.run_id))
    assert "dropped" in line and "BAD" in line and "trial 3" in line
