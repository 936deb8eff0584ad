"""The dashboard's frame-timing panel (web/js/timing.js) against a real server, in headless Chromium."""

from __future__ import annotations

from playwright.sync_api import expect

from liaison.client import Client

from test_dashboard import browser, page, sign_in  # noqa: F401 - fixtures shared with the dashboard tests


def test_the_timing_panel_shows_a_runs_dropped_frames_and_its_worst_trial(server, page):  # noqa: F811
    sign_in(page, server, "observer")
    expect(page.locator("#timing-verdict")).to_have_text("No run yet.")
    with Client(server.url, server.token) as client:
        run = client.run("slow_frame_demo", {"slow_trial": 1, "slow_ms": 1100})
        for event in client.events(timeout=60):
            if event.run_id == run.run_id and event.event in ("run_finished", "run_failed"):
                break
    expect(page.locator("#timing-verdict")).to_contain_text("Timing was bad", timeout=20_000)
    expect(page.locator("#timing-worst")).to_contain_text("(trial 1)")  # the worst frame: 1.1 s in trial 1
    assert int(page.locator("#timing-dropped").inner_text()) >= 1
    assert page.locator("#timing-panel").get_attribute("data-state") == "bad"
