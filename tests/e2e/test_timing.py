"""Every run reports its frame timing (real window under Xvfb), and the rig check works end to end."""

from __future__ import annotations

import json
import os

from conftest import liaison_command
from session import timing
from session.records import read_manifest


def run_to_end(server, key: str, exp_info: dict) -> tuple[list, dict]:
    """Run ``key`` on the server's worker; every event of the run, and its end event's data."""
    from liaison.client import Client

    with Client(server.url, server.token) as client:
        run = client.run(key, exp_info)
        seen = []
        for event in client.events(timeout=120):
            if event.run_id != run.run_id:
                continue
            seen.append(event)
            if event.event in ("run_finished", "run_failed"):
                return seen, event.data
    raise AssertionError("the run did not end")


def test_a_slow_frame_is_reported_with_its_trial(server):
    # 1.1 s in one frame: the run outlives timing.REPORT_EVERY, so a live report is due too
    events, end = run_to_end(server, "slow_frame_demo", {"slow_trial": 2, "slow_ms": 1100})
    assert end.get("outcome") == "completed", end
    report = end["timing"]
    assert report["frames"] >= 4 * 15 and report["refresh_hz"] == 60.0
    assert report["dropped"] >= 1
    # on a loaded machine other frames may be slow too; the deliberate one must be there, with its trial
    assert any(w["ms"] >= 1100 and w["trial"] == 2 for w in report["worst"]), report["worst"]
    assert report["timing_ok"] is False and end["timing_ok"] is False and "trial 2" in end["timing_problem"]
    assert "max_in_frames_ms" in report["gc"] and report["priority"]["requested"] == "high"
    run_dir = next(e.data["data_dir"] for e in events if e.event == "run_started")
    manifest = read_manifest(run_dir)
    assert manifest["timing"] == report
    assert manifest["priority"]["requested"] == "high" and manifest["priority"]["obtained"] in ("normal", "high")
    live = [e for e in events if e.event == "run_timing"]
    assert live and live[-1].data["timing"]["frames"] > 0
    assert any(w["trial"] == 2 for w in live[-1].data["timing"]["worst"])
    assert timing.REPORT_EVERY <= 1.0


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
        run = client.run("slow_frame_demo", {"slow_trial": 3, "slow_ms": 1100})
        end = next(e for e in client.events(timeout=60)
                   if e.run_id == run.run_id and e.event in ("run_finished", "run_failed"))
    assert end.data["timing_ok"] is False
    data_dir = str(server.config.data_dir)
    listing = subprocess.run([*liaison_command(), "runs", data_dir, "--json"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ))
    record = next(r for r in json.loads(listing.stdout) if r["run_id"] == run.run_id)
    assert any(w["trial"] == 3 and w["ms"] >= 1100 for w in record["timing"]["worst"])
    table = subprocess.run([*liaison_command(), "runs", data_dir], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ))
    line = next(line for line in table.stdout.splitlines() if line.startswith(run.run_id))
    assert "dropped" in line and "BAD" in line
