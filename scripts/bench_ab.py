#!/usr/bin/env python
"""A/B fan-out: this checkout against an earlier commit, interleaved on one machine in one run.

Is a change a regression? Absolute rows/s on a shared 2-core VM move by 2x
from day to day (the same commit gave 33k rows/s to each of 10 clients one
evening and 15k another), so only a ratio measured side by side means
anything. This starts our server from both trees (the base commit in a
temporary git worktree, this checkout as it is), each in its own process
with its worker, and runs the same ``rows_bench`` fan-out (one controller
and N-1 observers, no flips, as fast as the experiment goes) on each in
turn, the other one SIGSTOPped, alternating which goes first. It reports
per tree the median of events/s to each client, delivery lag p99 and CPU
per row of server and worker, and the B/A ratios. Usage:

  .venv/bin/python scripts/bench_ab.py --base 2de1f05 [--reps 3] [--rows 40000] [--clients 10]

Both trees serve the same experiment (this checkout's ``rows_bench``) and the
same window. ``--priority`` is passed to the trees that know the option
(default ``normal``, what a tree without it runs at).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from benchlib import measures as m  # noqa: E402
from benchlib import noise  # noqa: E402
from benchlib.experiments import write_root  # noqa: E402
from benchlib.hosts import Host  # noqa: E402
from benchlib.stats import median  # noqa: E402

TOKEN = "bench-token-000000"
WINDOW = {"size": [320, 240], "frame_rate": 60, "color": "grey", "units": "height", "use_fbo": False}


def worktree(rev: str, where: Path) -> Path:
    """A detached checkout of ``rev`` (raises if git cannot make one)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev],
                   check=True, capture_output=True)
    return where


def start(tree: Path, name: str, base: Path, priority: str) -> Host:
    """Our server from ``tree`` (its own host script and code) on this checkout's experiment."""
    script = tree / "scripts" / "benchlib" / "host_ours.py"
    args = ["--root", str(write_root(base / name / "root")), "--data", str(base / name / "data"),
            "--token", TOKEN, "--window", json.dumps(WINDOW)]
    if "--priority" in script.read_text():
        args += ["--priority", priority]
    # The tree's own packages first, and its folder as the cwd: its worker starts with ``python -m``,
    # which puts the cwd first on sys.path (from this checkout it would import this checkout's engine).
    return Host(name, str(script), args, base / f"{name}.log", env={"PYTHONPATH": str(tree)}, cwd=tree)


def summary(runs: list[dict]) -> dict:
    """Medians over the repetitions of one tree."""
    def med(key, sub=None):
        values = [(r.get(key) or {}).get(sub) if sub else r.get(key) for r in runs]
        return median([v for v in values if v is not None])

    return {
        "events_per_s_to_each": med("events_per_s"),
        "lag_p99_ms": med("lag_ms", "p99"),
        "cpu_us_per_row_server": median([r["cpu_us_per_row"].get("ours.server") for r in runs
                                         if r["cpu_us_per_row"].get("ours.server") is not None]),
        "cpu_us_per_row_worker": median([r["cpu_us_per_row"].get("ours.worker") for r in runs
                                         if r["cpu_us_per_row"].get("ours.worker") is not None]),
        "complete": all(r["complete"] for r in runs),
        "lost": sum(r["lost"] for r in runs),
        "runs": len(runs),
    }


async def measure(host: Host, others: list[Host], clients: int, rows: int) -> dict:
    """One fan-out run on ``host`` while the other hosts are stopped; with the foreign load seen."""
    for other in others:
        other.suspend()
    try:
        stacks = m.Stacks(ours_url=host.url, token=TOKEN, psy_url="", echo_url=None, hosts={"ours": host})
        before = noise.sample()
        result = await m.ours_fanout(stacks, clients, rows, timeout=300, stall=30)
        result["noise"] = noise.between(before, noise.sample())
        return result
    finally:
        for other in others:
            other.resume()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit (or branch, tag) to compare against")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--priority", default="normal")
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_ab.json"))
    args = parser.parse_args()
    from session.display import ensure_display

    ensure_display(None)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    base_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], capture_output=True,
                              text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        tmp_path = Path(tmp)
        tree_a = worktree(base_rev, tmp_path / "tree-a")
        hosts = {}
        try:
            hosts = {"A": start(tree_a, "A", tmp_path, args.priority), "B": start(ROOT, "B", tmp_path, args.priority)}
            for host in hosts.values():
                host.wait_ready(240)
            runs: dict[str, list[dict]] = {"A": [], "B": []}
            for rep in range(args.reps):
                for name in (("A", "B") if rep % 2 == 0 else ("B", "A")):
                    others = [h for n, h in hosts.items() if n != name]
                    result = asyncio.run(measure(hosts[name], others, args.clients, args.rows))
                    runs[name].append(result)
                    print(f"rep {rep + 1} {name}: {result.get('events_per_s') or 0:,.0f} events/s to each, "
                          f"lag p99 {result['lag_ms'].get('p99') or 0:,.0f} ms, cpu/row "
                          f"{result['cpu_us_per_row']}, foreign {result['noise']['foreign_cores']} cores",
                          file=sys.stderr, flush=True)
        finally:
            for host in hosts.values():
                host.stop(60)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree_a)],
                           capture_output=True)
    a, b = summary(runs["A"]), summary(runs["B"])

    def ratio(key):
        return round(b[key] / a[key], 3) if a.get(key) and b.get(key) is not None else None

    report = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "A": {"rev": base_rev, **a},
        "B": {"rev": f"{head} (working tree)", **b},
        "ratio_B_over_A": {k: ratio(k) for k in ("events_per_s_to_each", "lag_p99_ms", "cpu_us_per_row_server",
                                                  "cpu_us_per_row_worker")},
        "settings": vars(args), "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{'':28}{'A ' + base_rev:>16}{'B ' + head:>16}{'B/A':>8}")
    for key in ("events_per_s_to_each", "lag_p99_ms", "cpu_us_per_row_server", "cpu_us_per_row_worker"):
        av, bv = a.get(key), b.get(key)
        print(f"{key:28}{av or 0:16,.1f}{bv or 0:16,.1f}{ratio(key) or 0:8.2f}")
    print(f"complete: A {a['complete']} ({a['lost']} lost), B {b['complete']} ({b['lost']} lost); wrote {out}")


if __name__ == "__main__":
    main()
