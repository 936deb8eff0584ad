"""The dashboard's session plan panel in real Chromium: what ran, what is next, each participant's progress."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from liaison.client import Client
from test_dashboard import browser, page, sign_in  # noqa: F401 - fixtures

PLAN = """
name = "panel check"
participants = ["P1", "P2"]

[[experiments]]
key = "frames_demo"
exp_info = { n_trials = 1, frames_per_trial = 2 }

[[experiments]]
key = "rows_demo"
exp_info = { n_trials = 2 }
"""


def test_the_plan_panel_follows_a_plan_to_its_end(server, page):  # noqa: F811 - the page fixture
    sign_in(page, server)
    expect(page.locator("#plan-panel")).to_be_hidden()  # no plan started on this server yet
    with Client(server.url, server.token) as client:
        started = client.plan_start(PLAN)
        assert started["name"] == "panel check"
        panel = page.locator("#plan-panel")
        expect(panel).to_be_visible()
        expect(page.locator("#plan-summary")).to_contain_text("panel check")
        # each plan_changed event refreshes the panel, up to the end of the plan
        expect(panel).to_have_attribute("data-status", "finished", timeout=120_000)
        final = client.plan_state()
    expect(page.locator("#plan-summary")).to_contain_text(f"{final['completed_runs']} of 4 runs done")
    for participant in ("P1", "P2"):
        expect(page.locator(f'#plan-participants tr[data-participant="{participant}"] td')).to_have_text("2 of 2")
    steps = page.locator("#plan-steps li")
    expect(steps).to_have_count(len(final["steps"]))
    for i, step in enumerate(final["steps"]):
        expect(steps.nth(i)).to_have_attribute("data-status", step["status"])
    for participant in ("P1", "P2"):  # each participant runs each experiment once
        for key in ("frames_demo", "rows_demo"):
            expect(steps.filter(has_text=re.compile(rf"{participant} · {key} — done"))).to_have_count(1)
    expect(page.locator("#plan-controls")).to_be_hidden()  # nothing left to pause, skip or cancel
