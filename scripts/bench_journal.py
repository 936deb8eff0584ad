"""What the crash-safe journal costs per event, and where that cost is paid.

    .venv/bin/python scripts/bench_journal.py [--quick] [--out artifacts/bench_journal.json]

Measures, on a temporary data folder:
- journal append cost per event for realistic events (a data row of ~25
  columns, an annotation) in batches of 1, 16 and 256 events per transaction,
  with ``synchronous=NORMAL`` (the default: survives any process crash) and
  ``FULL`` (``--durable``: also survives power loss);
- the hub's whole per-event cost on the server's event loop (serialise,
  journal, replay buffer, fan-out to 10 subscribers) with and without the
  journal, so the journal's share is a ratio measured in the same run;
- the frame loop's side: ``Publisher.publish`` into a queue, which is all the
  experiment's thread does per event (the journal lives in the server
  process; the worker never touches the disk for events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from liaison.protocol import TOPIC_OF_EVENT, event_json  # noqa: E402
from liaison.server.hub import Hub, Subscriber  # noqa: E402
from session.events import Annotated, DataRows, Publisher  # noqa: E402
from liaison.store.journal import Journal  # noqa: E402


def data_row(i: int) -> dict:
    row = {f"trials.{k}": i for k in ("thisN", "thisTrialN", "thisRepN", "thisIndex")}
    row.update({"word": "RED", "colour": "blue", "congruent": 0, "corrAns": "b", "resp.keys": "b",
                "resp.corr": 1, "resp.rt": 0.4567 + i / 1000, "participant": "p01", "session": "001",
                "date": "2026-11-24_23h00.00.000", "expName": "stroop", "psychopyVersion": "2026.2.5",
                "frameRate": 60.0, "trial.started": 12.3 + i, "trial.stopped": 13.1 + i, "notes": ""})
    return row


def make_events(n: int) -> list:
    publisher = Publisher()
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(publisher.publish(Annotated(run_id="r", text=f"note {i}")))
        else:
            out.append(publisher.publish(DataRows(run_id="r", key="stroop", first_row=i, rows=[data_row(i)])))
    return out


def journal_cost(n: int, batch: int, durable: bool) -> float:
    """µs per event appended, batch by batch."""
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal.in_dir(folder, durable=durable)
        items = [(e, TOPIC_OF_EVENT[e.type].value, event_json(e)) for e in make_events(n)]
        start = time.perf_counter()
        for i in range(0, n, batch):
            journal.append(items[i:i + batch])
        elapsed = time.perf_counter() - start
        journal.close()
    return elapsed / n * 1e6


def hub_cost(n: int, with_journal: bool, clients: int = 10) -> float:
    """µs per event for the hub's whole job on the loop thread, batches as the worker delivers them."""
    with tempfile.TemporaryDirectory() as folder:
        loop = asyncio.new_event_loop()
        journal = Journal.in_dir(folder) if with_journal else None
        hub = Hub(loop, journal=journal)
        for c in range(clients):
            hub.subscribers[str(c)] = Subscriber(str(c), {"all"}, n + 1, lambda s: None)
        events = make_events(n)
        start = time.perf_counter()
        for i in range(0, n, 64):  # the worker's reader hands events over in bursts
            hub._incoming.extend(events[i:i + 64])
            hub._drain()
        elapsed = time.perf_counter() - start
        loop.close()
        if journal is not None:
            journal.close()
    return elapsed / n * 1e6


def frame_side_cost(n: int) -> float:
    """µs per event on the experiment's thread: construct, number, queue put."""
    publisher = Publisher()
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    publisher.subscribe(lambda e: outbox.put(("event", e)))
    rows = [[data_row(i)] for i in range(n)]
    start = time.perf_counter()
    for i in range(n):
        publisher.publish(DataRows(run_id="r", key="stroop", first_row=i, rows=rows[i]))
    return (time.perf_counter() - start) / n * 1e6


def best_of(fn, repeats: int, *args) -> float:
    return min(fn(*args) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    parser.add_argument("--out", default=str(PROJECT / "artifacts" / "bench_journal.json"))
    args = parser.parse_args()
    n = 2000 if args.quick else 20000
    repeats = 2 if args.quick else 3
    results: dict = {"events": n, "repeats": repeats, "journal_us_per_event": {}}
    for durable in (False, True):
        mode = "FULL" if durable else "NORMAL"
        for batch in (1, 16, 256):
            count = min(n, 500) if durable and batch == 1 else n  # an fsync per event is slow by design
            results["journal_us_per_event"][f"{mode} batch {batch}"] = best_of(journal_cost, repeats, count, batch,
                                                                               durable)
    results["hub_us_per_event_no_journal"] = best_of(hub_cost, repeats, n, False)
    results["hub_us_per_event_with_journal"] = best_of(hub_cost, repeats, n, True)
    results["journal_share_of_hub"] = 1 - results["hub_us_per_event_no_journal"] / results["hub_us_per_event_with_journal"]
    results["frame_thread_us_per_event"] = best_of(frame_side_cost, repeats, n)
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "load": os.getloadavg()}

    print(f"{'measure':<44}{'µs/event':>10}")
    for name, value in results["journal_us_per_event"].items():
        print(f"{'journal append, ' + name:<44}{value:>10.1f}")
    print(f"{'hub per event, 10 clients, no journal':<44}{results['hub_us_per_event_no_journal']:>10.1f}")
    print(f"{'hub per event, 10 clients, with journal':<44}{results['hub_us_per_event_with_journal']:>10.1f}")
    print(f"{'  journal share of the hub cost':<44}{results['journal_share_of_hub']:>10.0%}")
    print(f"{'frame thread per event (publish + queue put)':<44}{results['frame_thread_us_per_event']:>10.1f}")
    print("The journal is written by the server process; the experiment's frame loop only does the last line.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
