#!/usr/bin/env python
"""Measure the session engine's hot paths and print a table (and write JSON).

- publish cost: one event through the Publisher into the worker's outbox
  queue, alone and with a sender thread pickling concurrently (as in the worker);
- command -> main-thread latency: in-process (MainThreadQueue) and from the
  parent process through the worker pipe to the child's main thread;
- round trip of a cheap worker command (ping);
- garbage collection: a full collection in this PsychoPy process (the stall we
  avoid) against the longest pause seen during a real run with the GC guard;
- pause latency: request -> the running experiment observing PAUSED.

Numbers are for comparing, on one machine, in one run. Usage:
  .venv/bin/python scripts/bench_session.py [--out artifacts/bench_session.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from session.events import DataRows, Publisher, StatusChanged  # noqa: E402
from benchlib.stats import percentiles  # noqa: E402


def bench_publish(n: int = 100_000) -> dict:
    """Under the GC guard, as during a run (otherwise the bench's own garbage dominates max)."""
    from session.gcguard import GcGuard

    with GcGuard():
        return _bench_publish(n)


def _bench_publish(n: int) -> dict:
    row = {"trial_value": 10, "rt": 0.4321, "participant": "p01", "session": "001", "resp.keys": "left"}
    results = {}
    for label, with_sender in (("publish_alone", False), ("publish_with_sender", True)):
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        publisher = Publisher()
        publisher.subscribe(lambda e, outbox=outbox: outbox.put(("event", e)))
        stop = threading.Event()

        def sender(stop=stop, outbox=outbox):
            while not stop.is_set() or not outbox.empty():
                try:
                    pickle.dumps(outbox.get(timeout=0.05), protocol=pickle.HIGHEST_PROTOCOL)
                except queue.Empty:
                    pass

        thread = threading.Thread(target=sender, daemon=True) if with_sender else None
        if thread:
            thread.start()
        samples = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            publisher.publish(DataRows(run_id="r", key="k", first_row=i, rows=[dict(row)]))
            samples.append((time.perf_counter_ns() - t0) / 1000)
        stop.set()
        if thread:
            thread.join(30)
        results[label] = percentiles(samples)
    status_samples = []
    publisher = Publisher()
    sink: queue.SimpleQueue = queue.SimpleQueue()
    publisher.subscribe(sink.put)
    for _ in range(n):
        t0 = time.perf_counter_ns()
        publisher.publish(StatusChanged(status="running"))
        status_samples.append((time.perf_counter_ns() - t0) / 1000)
    results["publish_status_event"] = percentiles(status_samples)
    return results


def bench_mainloop(n: int = 2000) -> dict:
    from session.mainloop import MainThreadQueue

    mainloop = MainThreadQueue()
    samples = []

    def producer():
        for _ in range(n):
            sent = time.perf_counter()
            ran = mainloop.submit(time.perf_counter).result(5)
            samples.append((ran - sent) * 1e6)
            time.sleep(0.0005)
        mainloop.stop()

    threading.Thread(target=producer, daemon=True).start()
    mainloop.run_forever(idle=lambda: None, idle_interval=0.1)
    return percentiles(samples)


def bench_worker(n: int = 1000) -> dict:
    from conftest import make_root
    from session.worker import WorkerConfig, WorkerHost

    base = Path(tempfile.mkdtemp(prefix="liaison-bench-"))
    root = make_root(base)
    host = WorkerHost(WorkerConfig(root=str(root), data_dir=str(base / "data"),
                                   window={"size": [640, 480], "frame_rate": 60}))
    paused = []
    host.events.subscribe(lambda e: paused.append(e.latency) if e.type == "run_paused" else None)
    host.start(timeout=120)
    try:
        ping, probe = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            host.request("ping")
            ping.append((time.perf_counter() - t0) * 1e6)
        for _ in range(n):
            t0 = time.perf_counter()
            ran = host.request("probe")
            probe.append((ran - t0) * 1e6)
        host.request("start_run", key="frames_demo",
                     exp_info={"participant": "bench", "n_trials": 10_000, "frames_per_trial": 10})
        deadline = time.monotonic() + 60
        while host.request("status") != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # past the experiment's own start-up (stimulus creation, first frames)
        pause_rtt = []
        for _ in range(30):
            time.sleep(0.05)
            t0 = time.perf_counter()
            host.request("pause")
            pause_rtt.append((time.perf_counter() - t0) * 1e3)
            host.request("resume")
        host.request("stop")
        deadline = time.monotonic() + 30
        while host.current_run is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        return {
            "ping_round_trip_us": percentiles(ping),
            "command_to_child_main_thread_us": percentiles(probe),
            "pause_request_to_observed_ms": percentiles([x * 1e3 for x in paused]),
            "pause_round_trip_ms": percentiles(pause_rtt),
        }
    finally:
        host.shutdown()


def bench_gc() -> dict:
    from conftest import make_root
    from session import Session

    import psychopy.visual  # noqa: F401 - the objects a real experiment process holds
    garbage = [{"i": i, "s": str(i)} for i in range(300_000)]  # a data-heavy session's worth of objects
    t0 = time.perf_counter()
    gc.collect()
    full = (time.perf_counter() - t0) * 1e3
    base = Path(tempfile.mkdtemp(prefix="liaison-bench-gc-"))
    with Session(make_root(base), data_dir=base / "data", window={"size": [640, 480], "frame_rate": 60}) as s:
        result = s.run("frames_demo", {"participant": "gc", "n_trials": 200, "frames_per_trial": 10})
    del garbage
    return {"full_collection_ms": full, "max_pause_during_run_ms": result.gc_max_pause * 1e3,
            "run_outcome": result.outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_session.json"))
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    from session.display import ensure_display

    ensure_display(None)
    scale = 10 if args.quick else 1
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "publish_us": bench_publish(100_000 // scale),
        "main_thread_queue_us": bench_mainloop(2000 // scale),
        "worker": bench_worker(1000 // scale),
        "gc": bench_gc(),
    }
    print(f"{'measure':48} {'p50':>10} {'p99':>10} {'max':>10}")
    for section in ("publish_us", "worker"):
        for name, stats in report[section].items():
            print(f"{section + '.' + name:48} {stats['p50']:10.2f} {stats['p99']:10.2f} {stats['max']:10.2f}")
    stats = report["main_thread_queue_us"]
    print(f"{'main_thread_queue_us':48} {stats['p50']:10.2f} {stats['p99']:10.2f} {stats['max']:10.2f}")
    print(f"gc: full collection {report['gc']['full_collection_ms']:.1f} ms; "
          f"longest pause during a run {report['gc']['max_pause_during_run_ms']:.3f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
