"""Subprocess: the frame-timing floor, ``paced_bench`` in a bare PsychoPy process (no Liaison at all).

The same experiment file ``bench_frames.py`` runs through our server, called
directly: a ``visual.Window`` like the session's, a real ``ExperimentHandler``,
``thisSession=None``; no server, no worker, no pipe, no GC guard. With
``--priority realtime`` or ``high`` the main thread gets what our worker's
experiment thread gets (``session.priority``), so the difference between this and
our idle run is what Liaison costs; what this one misses is the machine's
(Xvfb and software GL here, steal on a VM). Prints one JSON line: frames,
missed deadlines, worst lateness, the experiment's longest GC pause.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=2400)
    parser.add_argument("--frames-per-trial", type=int, default=24)
    parser.add_argument("--spin-ms", type=float, default=1.0)
    parser.add_argument("--window", required=True, help="JSON WindowParams, as the session's")
    parser.add_argument("--priority", default="normal")
    args = parser.parse_args()

    from session.display import ensure_display

    ensure_display(None)
    from benchlib.experiments import FOLDER, write_root
    from session import priority
    from session.window import WindowParams

    with tempfile.TemporaryDirectory(prefix="frames-floor-") as tmp:
        root = write_root(Path(tmp))
        spec = importlib.util.spec_from_file_location("paced_bench", root / FOLDER / "paced_bench.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        obtained = None
        if args.priority != "normal":
            obtained = priority.raise_experiment_thread(args.priority, priority.machine_plan()
                                                        if args.priority == "realtime" else None)
        from psychopy import data, visual

        p = WindowParams.from_dict(json.loads(args.window))
        win = visual.Window(  # as session.window.WindowHost opens it
            size=list(p.size), fullscr=p.fullscr, screen=p.screen, winType=p.win_type, monitor=p.monitor,
            color=p.color, colorSpace="rgb", units=p.units, useFBO=p.use_fbo, allowStencil=p.allow_stencil,
            allowGUI=not p.fullscr, checkTiming=False)
        exp_info = {"participant": "floor", "session": "001", "n_frames": args.frames,
                    "frames_per_trial": args.frames_per_trial, "rate": 240.0, "spin_ms": args.spin_ms,
                    "late_ms": 1.0, "date": data.getDateStr(), "expName": "paced_bench"}
        this_exp = data.ExperimentHandler(name="paced_bench", extraInfo=exp_info, savePickle=False,
                                          saveWideText=False, dataFileName=str(Path(tmp) / "floor"))
        module.run(expInfo=exp_info, thisExp=this_exp, win=win, globalClock=None, thisSession=None)
        record = dict(module.RECORD)
        this_exp.abort()
        win.close()
    print(json.dumps({"floor": True, "frames": record.get("frames"), "missed": record.get("missed"),
                      "worst_late_ms": record.get("worst_late_ms"), "gc_max_ms": record.get("gc_max_ms"),
                      "late_ms": sorted(record.get("late_ms") or [])[-5:], "priority": obtained}))


if __name__ == "__main__":
    main()
