#!/usr/bin/env python
"""Marker-to-flip offset of the LSL plugin, measured with a real inlet on loopback.

A real server (with ``--plugin lsl``) runs ``examples/rt_demo``; an inlet in
this process receives the markers. For every trial, the trial_start and
routine_start markers are compared with the flip the experiment itself
recorded for the trial's first frame (``thisRow.t``, a timestampOnFlip), and
routine_end/trial_end with the flip that took the target off
(``target.stopped``), all on the LSL clock after ``time_correction`` (the
run_start marker's ``clock_zero`` says where the run's globalClock is 0).

Also: delivery lag (the inlet's receipt minus the marker's timestamp: what a
real-time consumer waits) and the frame-exact hooks' cost (the run's plugins
record). Discovery is confined to loopback (tests/lsl_loopback.cfg).

  .venv/bin/python scripts/bench_lsl.py [--trials 60] [--quick] [--out artifacts/bench_lsl.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ["LSLAPICFG"] = str(ROOT / "tests" / "lsl_loopback.cfg")  # loopback only, before liblsl starts

import pylsl  # noqa: E402

from benchlib.stats import percentiles  # noqa: E402


def hook_cost(n: int = 3000) -> dict:
    """One marker hook (JSON + push_sample) in a loop, an inlet connected: its cost on the experiment's thread."""
    from liaison.plugins.lsl import LslMarkers
    from session.plugins import RoutineBoundary

    source = f"liaison-bench-cost-{secrets.token_hex(4)}"
    markers = LslMarkers({"source_id": source})
    markers.session_started({"data_dir": ""})
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("source_id", f"{source}-markers", timeout=20)[0])
    inlet.open_stream(timeout=10)
    event = RoutineBoundary(run_id="20261201T220012-rt_demo-43570d", routine="trial", time=0.0)
    costs = []
    for i in range(n):
        started = time.perf_counter()
        markers.routine_started(event)
        costs.append(time.perf_counter() - started)
        if i % 200 == 0:
            inlet.pull_chunk()
    markers.session_stopping()
    return percentiles(costs, 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="10 trials")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_lsl.json"))
    args = parser.parse_args()
    trials = 10 if args.quick else args.trials

    from conftest import make_root
    from liaison.client import Client
    from liaison.server import ServerConfig, ServerThread
    from session.display import ensure_display

    ensure_display(None)
    source = f"liaison-bench-{secrets.token_hex(4)}"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_lsl_") as tmp:
        base = Path(tmp)
        config = ServerConfig(root=make_root(base, fixtures=False), port=0, token="bench-lsl-token-123456",
                              data_dir=base / "data", window={"size": [640, 480], "frame_rate": 60},
                              plugins=[f"lsl:name=bench,source_id={source}"])
        thread = ServerThread(config)
        with thread:
            streams = pylsl.resolve_byprop("source_id", f"{source}-markers", timeout=20)
            if not streams:
                print("error: LSL discovery found no outlet on loopback", file=sys.stderr)
                return 1
            inlet = pylsl.StreamInlet(streams[0], max_buflen=60)
            inlet.open_stream(timeout=10)
            received: list[tuple[dict, float, float]] = []  # marker, its timestamp, local_clock at receipt
            done = threading.Event()

            def pull() -> None:
                deadline = time.monotonic() + 60 + trials * 2
                while time.monotonic() < deadline:
                    sample, stamp = inlet.pull_sample(timeout=0.2)
                    if sample is None:
                        continue
                    marker = json.loads(sample[0])
                    received.append((marker, stamp, pylsl.local_clock()))
                    if marker["event"] == "run_end":
                        break
                done.set()

            puller = threading.Thread(target=pull, daemon=True)
            puller.start()
            with Client(thread.url, config.token, reconnect=False) as client:
                run = client.run("rt_demo", {"participant": "bench", "n_trials": trials})
                end = run.wait(timeout=60 + trials * 2)
            done.wait(30)
            correction = inlet.time_correction(timeout=10)
            csv_files = sorted((config.data_dir / "runs" / run.run_id).rglob("*.csv"))
            with open(csv_files[0], newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
    load_after = os.getloadavg()

    by_event: dict[str, list] = {}
    for marker, stamp, arrived in received:
        by_event.setdefault(marker["event"], []).append((marker, stamp, arrived))
    zero = by_event["run_start"][0][0]["clock_zero"]
    offsets = {name: [] for name in ("trial_start", "routine_start", "routine_end", "trial_end")}
    unrecorded = []  # (row, column): flips the experiment did not record (e.g. a stalled frame skipped the target)
    for i, row in enumerate(rows):
        for name, column in (("trial_start", "thisRow.t"), ("routine_start", "thisRow.t"),
                             ("routine_end", "target.stopped"), ("trial_end", "target.stopped")):
            if row.get(column) in (None, ""):
                unrecorded.append((i, column))
                continue
            offsets[name].append(by_event[name][i][1] + correction - (zero + float(row[column])))
    every = [x for values in offsets.values() for x in values]
    uncorrected = [x - correction for x in every]  # one machine, one clock: time_correction is only noise here
    lag = [arrived - stamp for _, stamp, arrived in received]
    expected = 2 + 4 * trials
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "pylsl": pylsl.__version__, "liblsl": pylsl.library_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "trials": trials, "outcome": end.data["outcome"], "markers_received": len(received),
        "markers_expected": expected, "lost": expected - len(received),
        "time_correction_s": correction,
        "flips_not_recorded_by_the_experiment": sorted(set(unrecorded)),
        "slow_frames_in_the_run": sum(1 for r in rows if r.get("target.started") in (None, "")),
        "offset_us": {"all": percentiles([abs(x) for x in every], 1e6),
                      "signed_all": percentiles(every, 1e6),
                      "all_without_time_correction": percentiles([abs(x) for x in uncorrected], 1e6),
                      **{name: percentiles([abs(x) for x in values], 1e6) for name, values in offsets.items()}},
        "delivery_lag_ms": percentiles(lag, 1e3),
        "hooks": end.data["plugins"].get("lsl"),
        "hook_cost_us_in_a_loop": hook_cost(300 if args.quick else 3000),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    o, d, h = result["offset_us"]["all"], result["delivery_lag_ms"], result["hooks"]
    print(f"LSL markers, rt_demo x {trials} trials: {len(received)}/{expected} received, outcome {result['outcome']}")
    print(f"  |marker - recorded flip|  median {o['p50']:.1f} us  p99 {o['p99']:.1f} us  max {o['max']:.1f} us"
          f"  (n={o['n']}, after time_correction {correction * 1e6:.1f} us)")
    u = result["offset_us"]["all_without_time_correction"]
    print(f"  ... without time_correction median {u['p50']:.2f} us  p99 {u['p99']:.2f} us  max {u['max']:.2f} us")
    print(f"  delivery lag             median {d['p50']:.2f} ms  p99 {d['p99']:.2f} ms  max {d['max']:.2f} ms")
    print(f"  hook cost (experiment's thread): {h['calls']} calls, max {h['max_ms']:.3f} ms, "
          f"mean {h['total_ms'] / max(1, h['calls']):.3f} ms, {h['over_budget']} over the {h['budget_ms']} ms budget")
    c = result["hook_cost_us_in_a_loop"]
    print(f"  one marker hook in a loop: median {c['p50']:.1f} us  p99 {c['p99']:.1f} us  max {c['max']:.1f} us")
    print(f"  load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}; wrote {out}")
    return 0 if result["lost"] == 0 and result["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
