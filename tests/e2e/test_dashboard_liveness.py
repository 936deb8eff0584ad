"""The dashboard's liveness and results panels, in real Chromium against real servers.

Stale links are made for real: the server process is frozen with SIGSTOP, or the browser is
set offline. A second client (a raw WebSocket observer) is the witness of what reached the
server. The end banner, the by-condition table (checked against the run's CSV) and axe-core
(zero violations) are checked on real runs.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import make_root, read_csv, start_serve, stop_serve
from test_dashboard import LONG_RUN, home, sign_in, start_run
from rawclient import Raw, open_raw

pytestmark = pytest.mark.usefixtures("display")

import test_dashboard  # noqa: E402 - its browser and page fixtures, shared by name
browser = test_dashboard.browser
page = test_dashboard.page


def run_events(raw: Raw, seconds: float) -> list[dict]:
    """Every event the witness receives for `seconds` (bounded)."""
    seen, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.extend(m for m in raw.messages(timeout=left) if m.get("type") == "event")
        except TimeoutError:
            break
    return seen


@pytest.fixture
def serve_process(tmp_path):
    """`liaison serve` as its own process (so it can be frozen), with a known token."""
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    env["LIAISON_TOKEN"] = "stale-link-token-0001"
    process, banner = start_serve(make_root(tmp_path), tmp_path / "data", env=env)
    url = banner["WebSocket"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    server = type("Served", (), {"port": port, "token": env["LIAISON_TOKEN"], "url": url, "process": process})
    try:
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        stop_serve(process)


def test_frozen_server_is_noticed_within_3_s_and_a_late_pause_is_refused(serve_process, page):
    server = serve_process
    sign_in(page, server)
    start_run(page, "frames_demo", {"participant": "frozen", **LONG_RUN})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    witness = open_raw(server.url, server.token, role="observer")
    try:
        os.kill(server.process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        page.get_by_role("button", name="Pause").click()  # sent, but nobody reads it
        expect(page.locator("#conn-text")).to_contain_text("No contact since", timeout=3_000)
        assert time.monotonic() - frozen_at < 3.5
        expect(page.locator("body")).to_have_attribute("data-stale", "true")
        expect(page.get_by_role("alert").filter(has_text="not confirmed")).to_be_visible(timeout=5_000)
        page.wait_for_timeout(1500)  # past the pause's deadline
        os.kill(server.process.pid, signal.SIGCONT)
        expect(page.locator("#conn-text")).to_have_text("Connected", timeout=15_000)
        expect(page.locator("body")).to_have_attribute("data-stale", "false")
        events = run_events(witness, 4.0)
        assert not [e for e in events if e["event"] == "run_paused"], "the late pause was carried out"
        assert any(e["event"] == "data_rows" for e in events), "the run went on"
        expect(page.locator("#status-text")).to_have_text("running")
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#end-banner")).to_have_attribute("data-outcome", "stopped", timeout=30_000)
    finally:
        witness.close()


def test_offline_browser_is_noticed_and_its_click_never_reaches_the_server(server, page):
    sign_in(page, server)
    start_run(page, "frames_demo", {"participant": "offline", **LONG_RUN})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    witness = open_raw(server.url, server.token, role="observer")
    try:
        page.context.set_offline(True)
        offline_at = time.monotonic()
        expect(page.locator("#conn-text")).to_contain_text("No contact since", timeout=3_000)
        assert time.monotonic() - offline_at < 3.5
        expect(page.locator("body")).to_have_attribute("data-stale", "true")
        expect(page.get_by_role("button", name="Pause")).to_be_disabled()
        # what the button would do is refused in the page, never queued for later
        assert page.evaluate("window.liaisonDashboard.send('pause')") == "not_sent"
        page.wait_for_timeout(4000)
        page.context.set_offline(False)
        expect(page.locator("#conn-text")).to_have_text("Connected", timeout=10_000)
        events = run_events(witness, 4.0)
        assert not [e for e in events if e["event"] == "run_paused"], "the offline click reached the server later"
        assert any(e["event"] == "data_rows" for e in events)
        expect(page.locator("#status-text")).to_have_text("running")
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#status-text")).to_have_text("idle", timeout=30_000)
    finally:
        page.context.set_offline(False)
        witness.close()


def test_end_banner_says_how_each_run_ended(server, page):
    sign_in(page, server)
    banner = page.locator("#end-banner")
    start_run(page, "rt_demo", {"participant": "banner"})
    expect(banner).to_have_attribute("data-outcome", "completed", timeout=30_000)
    expect(banner).to_contain_text("Run completed")
    expect(banner).to_contain_text("10 trials done")
    expect(banner).not_to_contain_text("null")
    expect(page.locator("#status-trial")).to_have_text(re.compile(r"^10( of 10| done)$"))  # the run's count
    expect(banner.get_by_role("button", name=re.compile(r"Download .*\.csv"))).to_be_visible()

    start_run(page, "frames_demo", {"participant": "banner", **LONG_RUN})
    expect(banner).to_be_hidden()
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    page.get_by_role("button", name="Stop").click()
    expect(banner).to_have_attribute("data-outcome", "stopped", timeout=30_000)
    expect(banner).to_contain_text("Run stopped early")
    expect(banner).to_contain_text(re.compile(r"duration \d+:\d\d"))

    start_run(page, "frames_demo", {"participant": "banner", **LONG_RUN})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    page.get_by_role("button", name="Abort…").click()
    page.get_by_label("Grace period").fill("1")
    page.get_by_label("Grace period").press("Enter")  # Enter confirms the abort
    expect(banner).to_have_attribute("data-outcome", "aborted", timeout=60_000)
    expect(banner).to_contain_text("Run aborted")

    start_run(page, "raises_demo", {"participant": "banner"})
    expect(banner).to_have_attribute("data-outcome", "failed", timeout=60_000)
    expect(banner).to_contain_text("Run failed")


def test_by_condition_table_matches_the_runs_csv(server, page):
    sign_in(page, server)
    run_id = start_run(page, "rt_demo", {"participant": "bycond"})
    row = page.locator(f'#history-table tbody tr[data-run-id="{run_id}"]')
    expect(row.locator(".outcome")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#plot-column")).to_have_value("rt")
    table = page.locator("#by-condition")
    expect(table).to_have_attribute("data-group", "target_side")
    expect(page.get_by_label("Group by")).to_have_value("target_side")  # the picker shows the grouping
    # history: a date with the time, the trial CSV first and highlighted, the other files folded
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(row.locator(".trial-csv button")).to_have_text(re.compile(r"\.csv$"))
    expect(row.locator("details.other-files")).not_to_have_attribute("open", "")
    expect(row.locator("details.other-files li").first).to_be_hidden()
    record = next(r for r in server.runs.list(50) if r["run_id"] == run_id)
    csv_rows = read_csv(next(Path(record["data_dir"]).rglob("*.csv")))
    levels = sorted({r["target_side"] for r in csv_rows if r["target_side"]})
    assert len(levels) >= 2
    for level in levels:
        mine = [r for r in csv_rows if r["target_side"] == level]
        line = table.locator(f'tbody tr[data-level="{level}"]')
        expect(line.locator("td").nth(2)).to_have_text(str(len(mine)))
        mean_rt = statistics.fmean(float(r["rt"]) for r in mine if r["rt"] not in ("", "None"))
        accuracy = statistics.fmean(float(r["correct"]) for r in mine)
        assert float(line.locator("td").nth(0).get_attribute("data-mean")) == pytest.approx(mean_rt, rel=1e-9)
        assert float(line.locator("td").nth(1).get_attribute("data-accuracy")) == pytest.approx(accuracy, rel=1e-9)
    # grouping by another column regroups the same rows
    page.get_by_label("Group by").select_option("(no grouping)")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tbody tr td").nth(2)).to_have_text(str(len(csv_rows)))
    # numeric measured columns come first in the plot's picker
    first = page.locator("#plot-column optgroup").first
    expect(first).to_have_attribute("label", "Measured")
    page.get_by_label("Histogram").check()
    expect(page.locator("#plot")).to_have_attribute("data-mode", "histogram")


def test_observer_sees_results_but_no_controls_or_client_list(server, page):
    page.goto(home(server) + f"#token={server.token}&role=observer")
    expect(page.locator("#conn-text")).to_have_text("Connected")
    expect(page.locator("#summary-panel")).to_be_visible()
    expect(page.locator("#clients-panel")).to_be_hidden()
    expect(page.locator(".run-controls")).to_be_hidden()
    expect(page.locator("#server-info")).to_contain_text("connected")
    before = int(re.search(r"(\d+) clients? connected", page.locator("#server-info").inner_text()).group(1))
    other = open_raw(server.url, server.token, role="observer")
    try:  # the footer's count follows who comes and goes, for observers too
        expect(page.locator("#server-info")).to_contain_text(f"{before + 1} clients connected", timeout=5_000)
    finally:
        other.close()
    expect(page.locator("#server-info")).to_contain_text(re.compile(rf"\b{before} clients? connected"), timeout=5_000)


def test_controller_sees_who_is_connected(server, page):
    witness = open_raw(server.url, server.token, role="observer")
    try:
        sign_in(page, server)
        clients = page.locator("#clients-list li")
        expect(clients.filter(has_text="(this tab)")).to_have_count(1)
        expect(clients.filter(has_text="observer")).not_to_have_count(0)
        expect(page.locator("#server-info")).to_contain_text(re.compile(r"\d+ clients connected"))
    finally:
        witness.close()


def test_annotation_while_idle_goes_to_the_session_log(server, page):
    sign_in(page, server)
    expect(page.locator("#status-text")).to_have_text("idle")
    expect(page.locator("#annotation-help")).to_contain_text("session log")


def test_no_accessibility_violations_during_and_after_a_run(server, page):
    from axe_playwright_python.sync_playwright import Axe

    sign_in(page, server)
    start_run(page, "rt_demo", {"participant": "axe"})
    expect(page.locator("#end-banner")).to_have_attribute("data-outcome", "completed", timeout=30_000)
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    box = page.get_by_role("button", name="Stop").bounding_box()
    assert box["height"] >= 44


def test_ctrl_c_says_the_server_is_shutting_down(serve_process, page):
    server = serve_process
    sign_in(page, server)
    server.process.send_signal(signal.SIGINT)
    expect(page.locator("#status-text")).to_have_text("server shutting down", timeout=30_000)
    expect(page.locator("#event-log")).not_to_contain_text("worker exited")
    expect(page.get_by_role("alert").filter(has_text="restarting")).to_have_count(0)


def test_reconnects_within_2_s_of_a_restarted_server(tmp_path, page):
    import socket

    with socket.socket() as probe:  # a free loopback port, reused by both servers
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    env["LIAISON_TOKEN"] = "restart-token-000001"
    root = make_root(tmp_path)
    process, _ = start_serve(root, tmp_path / "data", "--port", str(port), env=env)
    try:
        server = type("Served", (), {"port": port, "token": env["LIAISON_TOKEN"]})
        sign_in(page, server)
        stop_serve(process)
        expect(page.locator("#conn-text")).to_contain_text(re.compile("Reconnecting|shutting down|No contact"))
        page.wait_for_timeout(3000)  # down for a while: the page is retrying, not waiting for minutes
        process, _ = start_serve(root, tmp_path / "data", "--port", str(port), env=env)
        back = time.monotonic()
        expect(page.locator("#conn-text")).to_have_text("Connected", timeout=10_000)
        assert time.monotonic() - back < 2.0, f"reconnected {time.monotonic() - back:.1f} s after the server was back"
        expect(page.locator("#status-text")).to_have_text("idle")  # no longer "server shutting down"
    finally:
        stop_serve(process)


def test_a_tab_opened_while_the_worker_restarts_gets_the_experiments(server, page, browser):
    sign_in(page, server)
    start_run(page, "hangs_demo", {"participant": "restart"})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    page.get_by_role("button", name="Abort…").click()
    page.get_by_label("Grace period").fill("0")
    page.get_by_label("Grace period").press("Enter")
    # the worker is killed and a new one starts; a tab opened now gets a snapshot without it
    expect(page.locator("#event-log")).to_contain_text(re.compile("aborted|Status: idle"), timeout=60_000)
    late = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        late.goto(home(server) + f"#token={server.token}&role=observer")
        expect(late.locator("#conn-text")).to_have_text("Connected")
        expect(late.locator("#exp-list")).to_contain_text("rt_demo", timeout=60_000)
        expect(late.locator("#status-text")).to_have_text("idle", timeout=60_000)
    finally:
        late.context.close()
