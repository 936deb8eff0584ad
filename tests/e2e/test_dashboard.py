"""The browser dashboard (web/) against a real liaison server, in headless Chromium.

Nothing is mocked: the page is served by the server, talks to it over a real
WebSocket, and the runs are real PsychoPy experiments in the worker. Screenshots
of a run in progress go to artifacts/ (laptop and tablet sizes).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import PROJECT

from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = PROJECT / "artifacts"
LAPTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}
# frames_demo runs n_trials * frames_per_trial frames; long enough to pause and stop it by hand.
LONG_RUN = {"n_trials": "2000", "frames_per_trial": "20"}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/setup (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def home(server) -> str:
    return f"http://127.0.0.1:{server.port}/"


def sign_in(page, server, role: str = "controller") -> None:
    page.goto(home(server))
    page.get_by_label("Access token").fill(server.token)
    page.get_by_role("radio", name=re.compile(role, re.I)).check()
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#conn-text")).to_have_text("Connected")
    expect(page.locator("#role-badge")).to_contain_text(role.capitalize())


def field(page, name: str):
    """The expInfo form's input for ``name``."""
    return page.locator(f'#run-form [data-xi-name="{name}"]')


def points(page) -> int:
    return int(page.locator("#plot").get_attribute("data-points"))


def wait_points(page, at_least: int, timeout: float = 20.0) -> int:
    """Wait until the plot shows ``at_least`` points (polled: the page's CSP forbids eval)."""
    deadline = time.monotonic() + timeout
    while (count := points(page)) < at_least:
        assert time.monotonic() < deadline, f"the plot has {count} points, expected {at_least}"
        page.wait_for_timeout(100)
    return count


def start_run(page, key: str, fields: dict[str, str]) -> str:
    page.get_by_role("radio", name=key, exact=True).check()
    expect(page.locator("#expinfo-key")).to_have_text(key)
    for name, value in fields.items():
        field(page, name).fill(value)
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#status-text")).to_have_text(re.compile("starting|running"), timeout=30_000)
    expect(page.locator("#status-key")).to_have_text(key)
    run_id = page.locator("#status-run").inner_text()
    assert key in run_id
    return run_id


def table_row_numbers(page) -> list[int]:
    """Every row number the table scrolls through, newest first; the drawn part must agree."""
    model = page.evaluate("window.liaisonDashboard.rowNumbers()")
    drawn = [int(n) for n in page.locator("#data-table tbody th").all_inner_texts()]
    assert drawn and drawn == model[:len(drawn)], "the table draws the newest rows first, in order"
    return model


def test_wrong_token_shows_an_error(server, page):
    page.goto(home(server))
    page.get_by_label("Access token").fill("not-the-token")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#login-error")).to_contain_text("wrong token")
    expect(page.get_by_role("alert").filter(has_text="Sign-in failed")).to_be_visible()
    expect(page.locator("#conn-text")).to_have_text("Disconnected")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('liaison.token')") is None


def test_controller_runs_pauses_stops_and_downloads(server, page):
    sign_in(page, server)
    expect(page.get_by_role("radio", name="rt_demo", exact=True)).to_be_visible()
    page.get_by_role("radio", name="frames_demo", exact=True).check()

    # the form validates before anything is sent
    field(page, "participant").fill("")
    field(page, "n_trials").fill("many")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_text("Enter the participant.")).to_be_visible()
    expect(page.get_by_text("n_trials must be a number.")).to_be_visible()
    expect(field(page, "participant")).to_be_focused()
    expect(page.locator("#status-text")).to_have_text("idle")

    run_id = start_run(page, "frames_demo", {"participant": "dash", **LONG_RUN})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    expect(page.locator("#data-table tbody tr").first).to_be_visible()
    first = wait_points(page, 2)
    grown = wait_points(page, first + 3)
    assert grown > first
    expect(page.locator("#status-elapsed")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(page.locator("#status-trial")).to_contain_text("of 2000", timeout=10_000)
    expect(page.locator("#plot-column")).not_to_have_value("")
    headers = page.locator("#data-table thead th").all_inner_texts()
    assert headers[0] == "#" and headers.index("trial_value") < headers.index("trials.thisN"), \
        "what the experiment measured comes before the loop's bookkeeping"

    ARTIFACTS.mkdir(exist_ok=True)
    wait_points(page, 12)
    for close in page.locator(".toast-close").all():  # messages are dismissable; keep the shots clear
        close.click()
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    page.set_viewport_size(TABLET)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-tablet.png"))
    page.set_viewport_size(LAPTOP)

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status-text")).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_enabled()
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#status-text")).to_have_text("running")

    page.get_by_label("Annotation").fill("participant sneezed")
    page.get_by_role("button", name="Add annotation").click()
    expect(page.locator("#event-log")).to_contain_text("Note: participant sneezed")
    page.get_by_label("Data name").fill("operator")
    page.locator("#data-value").fill('"checked electrodes"')
    page.get_by_role("button", name="Add data").click()
    expect(page.locator("#event-log")).to_contain_text("Data added: operator = checked electrodes")

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status-text")).to_have_text("idle", timeout=30_000)
    row = page.locator(f'#history-table tbody tr[data-run-id="{run_id}"]')
    expect(row.locator(".outcome")).to_have_text("stopped")
    rows = int(row.locator("td.num").first.inner_text())
    assert rows >= 12
    # every row once, newest first, none lost or doubled
    numbers = table_row_numbers(page)
    assert numbers == list(range(rows, 0, -1))

    with page.expect_download() as download_info:
        row.get_by_role("button", name=re.compile(r"\.csv")).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    content = Path(download.path()).read_text(encoding="utf-8-sig")
    header = content.splitlines()[0].split(",")
    assert {"trial_value", "frames", "participant", "operator"} <= set(header)
    assert "dash" in content


def test_rt_demo_plots_rt_by_default(server, page):
    sign_in(page, server)
    run_id = start_run(page, "rt_demo", {"participant": "p01"})
    row = page.locator(f'#history-table tbody tr[data-run-id="{run_id}"]')
    expect(row.locator(".outcome")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#plot-column")).to_have_value("rt")
    assert points(page) == 10
    expect(page.locator("#plot")).to_have_attribute("aria-label", re.compile(r"rt per row: 10 values"))
    expect(page.locator("#data-table tbody tr")).to_have_count(10)


def test_reconnects_after_a_drop_without_losing_or_repeating_rows(server, page):
    sign_in(page, server)
    run_id = start_run(page, "frames_demo", {"participant": "drop", **LONG_RUN})
    before = wait_points(page, 3)
    page.evaluate("window.liaisonDashboard.dropConnection()")
    expect(page.locator("#conn-text")).to_contain_text("Reconnecting")
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=15_000)
    wait_points(page, before + 5)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status-text")).to_have_text("idle", timeout=30_000)
    row = page.locator(f'#history-table tbody tr[data-run-id="{run_id}"]')
    expect(row.locator(".outcome")).to_have_text("stopped")
    rows = int(row.locator("td.num").first.inner_text())
    assert table_row_numbers(page) == list(range(rows, 0, -1))
    expect(page.locator("#event-log")).to_contain_text("Reconnected")


def test_abort_asks_first_then_ends_a_hung_run(server, page):
    sign_in(page, server)
    run_id = start_run(page, "hangs_demo", {"participant": "hung"})
    expect(page.locator("#status-text")).to_have_text("running", timeout=30_000)
    dialog = page.get_by_role("dialog", name="Abort this run?")
    page.get_by_role("button", name="Abort…").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status-text")).to_have_text("running")
    page.get_by_role("button", name="Abort…").click()
    dialog.get_by_label("Grace period").fill("soon")
    dialog.get_by_role("button", name="Abort run").click()
    expect(dialog.get_by_text("Enter a number of seconds")).to_be_visible()
    dialog.get_by_label("Grace period").fill("0.5")
    dialog.get_by_role("button", name="Abort run").click()
    expect(dialog).to_be_hidden()
    row = page.locator(f'#history-table tbody tr[data-run-id="{run_id}"]')
    expect(row.locator(".outcome")).to_have_text("aborted", timeout=60_000)
    expect(page.get_by_role("status").filter(has_text="Run aborted")).to_be_visible(timeout=60_000)
    # the killed run's journalled rows come back as a CSV, announced and downloadable
    expect(page.locator("#event-log")).to_contain_text("rebuilt from the journal", timeout=30_000)
    recovered = row.get_by_role("button", name=re.compile(r"hangs_demo_recovered\.csv"))
    with page.expect_download() as download_info:
        recovered.click()
    content = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert "hung" in content.splitlines()[1], "the participant's row is in it"


def test_observer_sees_the_session_but_no_controls(server, page):
    page.goto(home(server) + f"#token={server.token}&role=observer")
    expect(page.locator("#conn-text")).to_have_text("Connected")
    assert "token" not in page.url  # read from the fragment, then removed from the address bar
    assert page.evaluate("sessionStorage.getItem('liaison.token')") == server.token
    expect(page.locator("#role-badge")).to_contain_text("Observer")
    expect(page.locator("#status-text")).to_be_visible()
    expect(page.locator("#exp-list")).to_contain_text("rt_demo")
    expect(page.locator("#history-table tbody tr").first).to_be_visible()
    controls = re.compile(r"^(Run|Pause|Resume|Stop|Abort…|Add annotation|Add data|Add a field)$")
    expect(page.get_by_role("button", name=controls)).to_have_count(0)
    expect(page.locator("#run-form, .run-controls, #notes")).to_have_count(3)  # present but hidden
    expect(page.locator("#run-form, .run-controls, #notes").filter(visible=True)).to_have_count(0)
    expect(page.get_by_role("radio", name="rt_demo")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Annotation")).to_have_count(0)


def test_dry_run_switch_starts_a_simulated_run_shown_as_such(server, page):
    sign_in(page, server)
    page.get_by_role("radio", name="keys_task", exact=True).check()
    page.get_by_label("Dry run").check()
    run_id = start_run(page, "keys_task", {"participant": "dry"})
    expect(page.locator("#status-run")).to_contain_text("DRY RUN", timeout=30_000)
    from liaison.client import Client

    with Client(server.url, server.token) as client:
        deadline = time.monotonic() + 240  # 40 trials answered by the simulated participant (slow CI)
        while (record := client.get_run(run_id.split()[0]))["status"] != "ended":
            assert time.monotonic() < deadline, record
            time.sleep(0.2)
    assert record["outcome"] == "completed" and record["exp_info"]["simulated"] is True
    assert record["rows"] >= 40
