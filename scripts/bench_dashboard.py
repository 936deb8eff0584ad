#!/usr/bin/env python
"""Measure the browser dashboard under a fast run: page lag, click -> server, heap, rows.

A real server (`liaison serve`, its own process, as in the lab) runs a real experiment that ends RATE/60 rows per frame, so the
server publishes RATE rows per second; headless Chromium (/usr/bin/chromium) shows the
dashboard. Measured in the page: event-loop lag (a 20 ms interval's lateness, p50/p99/max),
the JS heap at the end, and whether every row reached the page's model. Measured outside:
click -> server, from Playwright's click on "Add annotation" to a second WebSocket client
receiving the resulting `annotation` event (an upper bound: it includes the delivery to that
client). Numbers are for comparing, on one machine, in one run. Usage:
  .venv/bin/python scripts/bench_dashboard.py [--quick] [--rates 5000,20000] [--out artifacts/bench_dashboard.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib.stats import quantile  # noqa: E402

EXPERIMENT = '''"""Benchmark load: ROWS_PER_FRAME rows end every frame, until TOTAL rows."""
import os
from psychopy import data
from psychopy.constants import FINISHED, STARTED

expName = "fast_rows"
expInfo = {"participant": "bench", "rows_per_frame": 84, "total": 20000, "date|hid": "", "expName|hid": expName}


def setupData(expInfo, dataDir=None):
    dataDir = dataDir or os.path.dirname(os.path.abspath(__file__))
    return data.ExperimentHandler(name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
                                  dataFileName=os.path.join(dataDir, "data", f"bench_{expInfo['date']}"))


def setupWindow(expInfo=None, win=None):
    return win


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    per, total, n = int(expInfo["rows_per_frame"]), int(expInfo["total"]), 0
    while n < total and thisExp.status != FINISHED:
        for _ in range(min(per, total - n)):
            thisExp.addData("condition", "ab"[n % 2])
            thisExp.addData("rt", 0.3 + (n % 97) / 1000)
            thisExp.addData("correct", n % 3 != 0)
            thisExp.nextEntry()
            n += 1
        if thisSession is not None:  # as Builder does after each trial: the new rows go out
            thisSession.sendExperimentData()
        win.flip()
    thisExp.status = FINISHED
'''

LAG_PROBE = """
window.__lag = [];
(() => { let last = performance.now();
  setInterval(() => { const now = performance.now(); window.__lag.push(Math.max(0, now - last - 20)); last = now; }, 20);
})();
"""


def bench_rate(browser, server, rate: int, total: int, clicks: int) -> dict:
    from playwright.sync_api import expect
    from wsraw import Raw

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(LAG_PROBE)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/#token={server.token}")
    expect(page.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
    witness = Raw(server.url, server.token, role="observer")
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                for m in witness.messages(timeout=0.5):
                    if m.get("event") == "annotation":
                        seen[m["data"]["text"]] = time.monotonic()
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - closed at the end
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    page.get_by_role("radio", name="fast_rows", exact=True).check()
    page.locator('#run-form [data-xi-name="rows_per_frame"]').fill(str(max(1, round(rate / 60))))
    page.locator('#run-form [data-xi-name="total"]').fill(str(total))
    page.evaluate("window.__lag.length = 0; window.liaisonDashboard.resetPerf()")
    t0 = time.monotonic()
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#status-text")).to_have_text("running", timeout=60_000)
    latencies = []
    for i in range(clicks):
        text = f"bench click {rate} {i}"
        page.get_by_label("Annotation").fill(text)
        clicked = time.monotonic()
        page.get_by_role("button", name="Add annotation").click()
        deadline = clicked + 3
        while text not in seen and time.monotonic() < deadline:
            time.sleep(0.002)
        if text in seen:
            latencies.append((seen[text] - clicked) * 1000)
        page.wait_for_timeout(150)
    expect(page.locator("#status-text")).to_have_text("idle", timeout=120_000)
    ran = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while page.evaluate("window.liaisonDashboard.rowCount") < total and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    caught_up = time.monotonic() - t0
    rows = page.evaluate("window.liaisonDashboard.rowCount")
    lag = page.evaluate("window.__lag")
    heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
    work = page.evaluate("window.liaisonDashboard.perf")
    stop.set()
    witness.close()
    context.close()
    return {
        "rate_rows_per_s": rate, "rows_expected": total, "rows_on_page": rows, "all_rows": rows == total,
        "run_s": round(ran, 2), "page_caught_up_s": round(caught_up, 2),
        "lag_ms": {"n": len(lag), "p50": round(quantile(lag, 0.5) or 0, 1), "p99": round(quantile(lag, 0.99) or 0, 1),
                   "max": round(max(lag) if lag else 0, 1)},
        "click_to_server_ms": {"n": len(latencies), "p50": round(quantile(latencies, 0.5) or 0, 1),
                               "max": round(max(latencies) if latencies else 0, 1)},
        "heap_mb": round(heap / 2**20, 1) if heap else None,
        # event handling and drawing (total and longest), frames received and the longest gap between two
        "page_work_ms": {k: round(v, 1) for k, v in work.items() if k != "lastFrameAt"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and clicks")
    parser.add_argument("--rates", default="5000,20000")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_dashboard.json"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import start_serve, stop_serve  # the tests' way to run `liaison serve`
    from session.display import ensure_display

    ensure_display(None)  # the server inherits this process's display (a private Xvfb when headless)
    base = Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    (base / "root" / "fast_rows").mkdir(parents=True)
    (base / "root" / "fast_rows" / "fast_rows.py").write_text(EXPERIMENT)
    token = "bench-dashboard-token"
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    env["LIAISON_TOKEN"] = token
    results = []
    process = None
    try:
        process, banner = start_serve(base / "root", base / "data", env=env)
        url = banner["WebSocket"]
        server = type("Served", (), {"url": url, "token": token, "port": int(url.rsplit(":", 1)[1].strip("/"))})
        if True:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=["--headless", "--no-sandbox", "--disable-gpu",
                                                           "--enable-precise-memory-info"])
                for rate in [int(r) for r in args.rates.split(",")]:
                    total = rate * (2 if args.quick else 4)
                    result = bench_rate(browser, server, rate, total, 5 if args.quick else 12)
                    results.append(result)
                    print(f"{rate:>6} rows/s: rows {result['rows_on_page']}/{total}, run {result['run_s']} s, "
                          f"page caught up {result['page_caught_up_s']} s, lag p50 {result['lag_ms']['p50']} ms "
                          f"p99 {result['lag_ms']['p99']} ms max {result['lag_ms']['max']} ms, click->server p50 "
                          f"{result['click_to_server_ms']['p50']} ms max {result['click_to_server_ms']['max']} ms "
                          f"(n={result['click_to_server_ms']['n']}), heap {result['heap_mb']} MB, work {result['page_work_ms']}",
                          flush=True)
                browser.close()
    finally:
        if process is not None:
            stop_serve(process)
        shutil.rmtree(base, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
