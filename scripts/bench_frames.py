#!/usr/bin/env python
"""Frame timing alone: ``paced_bench`` (240 Hz deadlines) bare, then in our worker idle and loaded.

A quick loop for work on frame timing (``scripts/bench.py`` measures the same
side by side with PsychoPy, with everything else). Each repetition first runs
the *floor*: the same experiment file in a bare PsychoPy process at the same
priority (``benchlib/frames_floor.py``: no server, no worker), so what our
idle run misses beyond it is Liaison's, and what the floor misses is the
machine's (Xvfb, software GL, a VM's steal). Usage:

  .venv/bin/python scripts/bench_frames.py [--frames 2400] [--priority high] [--out artifacts/bench_frames.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from benchlib import measures as m  # noqa: E402
from benchlib import noise  # noqa: E402
from benchlib.experiments import write_root  # noqa: E402
from benchlib.hosts import Host  # noqa: E402

TOKEN = "bench-token-000000"
WINDOW = {"size": [320, 240], "frame_rate": 60, "color": "grey", "units": "height", "use_fbo": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2400)
    parser.add_argument("--priority", default=None, help="normal, high or realtime [default: the server's]")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "bench_frames.json"))
    args = parser.parse_args()
    from session.display import ensure_display

    ensure_display(None)
    from session import priority
    from session.display import xvfb_pid

    if xvfb_pid() and args.priority != "normal":  # as `liaison serve` does with the Xvfb it starts
        print("display server:", priority.raise_display_server(
            xvfb_pid(), priority.machine_plan() if args.priority == "realtime" else None, args.priority or "high") or "raised")
    results = []
    with tempfile.TemporaryDirectory(prefix="liaison-frames-") as tmp:
        base = Path(tmp)
        root = write_root(base / "root")
        extra = ["--priority", args.priority] if args.priority else []
        host = Host("ours", "host_ours.py", ["--root", str(root), "--data", str(base / "data"), "--token", TOKEN,
                                             "--window", json.dumps(WINDOW), *extra], base / "ours.log")
        try:
            host.wait_ready(240)
            stacks = m.Stacks(ours_url=host.url, token=TOKEN, psy_url="", echo_url=None, hosts={"ours": host})
            for _ in range(args.repeat):
                results.append(floor(args.frames, args.priority or "high"))
                print(json.dumps(results[-1], default=str), flush=True)
                for loaded in (False, True):
                    before = noise.sample()
                    result = asyncio.run(m.ours_frames(stacks, args.frames, loaded))
                    result["noise"] = noise.between(before, noise.sample())
                    results.append(result)
                    print(json.dumps({k: result.get(k) for k in (
                        "loaded", "frames", "missed", "worst_late_ms", "gc_max_pause_ms", "gc_max_ms_by_experiment",
                        "timing", "priority")} | {"foreign_cores": result["noise"]["foreign_cores"]}, default=str),
                        flush=True)
        finally:
            host.stop(60)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))


def floor(frames: int, level: str) -> dict:
    """The same paced loop in a bare PsychoPy process (``benchlib/frames_floor.py``), with the foreign load."""
    before = noise.sample()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchlib" / "frames_floor.py"),
                           "--frames", str(frames), "--window", json.dumps(WINDOW), "--priority", level],
                          capture_output=True, text=True, timeout=frames / 240 + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"floor": True, "error": done.stderr[-2000:]}
    result["noise"] = noise.between(before, noise.sample())
    return result


if __name__ == "__main__":
    main()
