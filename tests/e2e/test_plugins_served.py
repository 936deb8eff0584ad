"""Plugins through a real ``liaison serve``: found by entry point, failures reported, budgets kept.

The test plugins (tests/plugins) and the example (examples/plugins) are
registered the way an installed package registers them: a ``*.dist-info``
folder with ``entry_points.txt`` on the server's path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import EXAMPLES, PROJECT, make_root, start_serve, stop_serve

from liaison.client import Client

TOKEN = "plugin-test-token-1234567890"
ENTRY_POINTS = """[liaison.plugins]
raising = liaison_test_plugins:RaisingPlugin
slow = liaison_test_plugins:SlowPlugin
hello = liaison_hello.plugin:HelloPlugin
"""


def plugin_env(base: Path) -> dict[str, str]:
    site = base / "site"
    dist = site / "liaison_test_plugins-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: liaison-test-plugins\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    paths = [str(site), str(PROJECT / "tests" / "plugins"), str(EXAMPLES / "plugins"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def test_a_raising_plugin_is_reported_the_run_completes_and_a_slow_hook_shows_in_the_report(tmp_path):
    root = make_root(tmp_path)
    data_dir = tmp_path / "data"
    n_trials = 11  # one more than the errors a plugin may raise in a run before it is left alone
    with open(tmp_path / "server.log", "w") as server_log:
        process, banner = start_serve(root, data_dir, "--token", TOKEN, "--plugin", "raising", "--plugin",
                                      "slow:delay_ms=4", "--plugin", "hello:greeting=Hi", env=plugin_env(tmp_path),
                                      stderr=server_log)
        try:
            with Client(banner["WebSocket"], TOKEN, reconnect=False) as client:
                run = client.run("rt_demo", {"participant": "plug", "n_trials": n_trials})
                end = run.wait(timeout=180)
                errors = []
                for event in client.events(timeout=10):  # server-side errors may trail the run's end
                    if event.event == "plugin_error" and event.data["where"] == "server":
                        errors.append(event)
                        break
                errors += [e for e in run.events if e.event == "plugin_error"]
        finally:
            stop_serve(process)
    assert end.event == "run_finished" and end.data["outcome"] == "completed", end.data
    assert len(run.rows) == n_trials

    engine = [e.data for e in errors if e.data["where"] == "engine"]
    assert len(engine) == 10 and {e["plugin"] for e in engine} == {"raising"}
    assert all(e["hook"] == "routine_started" and "engine hook broke on routine trial" in e["error"]
               and e["run_id"] == run.run_id for e in engine)
    assert "not called again" in engine[-1]["error"] and "RuntimeError" in engine[0]["traceback"]
    server = [e.data for e in errors if e.data["where"] == "server"]
    assert server and server[0]["hook"] == "data_rows" and "server hook broke" in server[0]["error"]

    record = end.data["plugins"]
    assert record["raising"]["errors"] == 10 and record["raising"]["disabled"] is True
    slow = record["slow"]
    # every trial start went over; a hook that does nothing can too, once, when the VM preempts the thread
    assert slow["over_by_hook"]["trial_started"] == n_trials
    assert slow["over_budget"] == sum(slow["over_by_hook"].values())
    assert slow["budget_ms"] == 1.0 and slow["max_ms"] >= 4.0 and slow["slowest_hook"] == "trial_started"
    hello = record["hello"]
    assert hello["errors"] == 0 and hello["calls"] > 100  # every flip of the run, plus its routines
    manifest = json.loads((data_dir / "runs" / run.run_id / "manifest.json").read_text())
    assert manifest["plugins"] == record, "the manifest carries the same record"

    # the example plugin's two halves spoke: the engine's in the run's captured stderr, the server's in its log
    run_stderr = (data_dir / "runs" / run.run_id / "stderr.log").read_text()
    assert f"Hi from run {run.run_id}: " in run_stderr and f"{n_trials} routines" in run_stderr
    assert f"Hi: run {run.run_id} of rt_demo completed with {n_trials} rows" in (tmp_path / "server.log").read_text()


def test_the_dashboard_shows_a_plugin_error_in_its_event_log(tmp_path, monkeypatch):
    """Missing markers must not go unnoticed: the experimenter's page says which plugin failed, and where."""
    from playwright.sync_api import expect, sync_playwright

    from liaison.server import ServerConfig, ServerThread

    env = plugin_env(tmp_path)
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # the worker inherits it
    for path in reversed(env["PYTHONPATH"].split(os.pathsep)):
        monkeypatch.syspath_prepend(path)  # the registry (this process) finds the test plugins
    config = ServerConfig(root=make_root(tmp_path), port=0, token=TOKEN, data_dir=tmp_path / "data",
                          window={"size": [320, 240], "frame_rate": 60}, plugins=["raising"])
    thread = ServerThread(config)
    with thread as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/#token={TOKEN}")
            expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
            with Client(thread.url, TOKEN, reconnect=False) as client:
                run = client.run("rt_demo", {"participant": "dash", "n_trials": 1})
                assert run.wait(timeout=120).data["outcome"] == "completed"
            entry = page.locator("#event-log li.log-error", has_text="Plugin raising failed in routine_started")
            expect(entry.first).to_contain_text("(engine): RuntimeError: engine hook broke on routine trial",
                                                timeout=30_000)
        finally:
            browser.close()
