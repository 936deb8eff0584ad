"""The soak's experiment (rows at a steady rate) and the measurement of what PsychoPy keeps per row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

KEY = "soak_rows"

EXPERIMENT = '''\
"""Soak experiment written by scripts/soak.py: `rate` data rows per second for `seconds` s.

Every TICK it adds the rows due by then (paced on time.perf_counter, so the
average rate holds even when a tick comes late), publishes them with
thisSession.sendExperimentData() and reads thisExp.status (where remote
commands land); it flips the window every FLIP_EVERY ticks.
"""
import os
import time

from psychopy import data
from psychopy.constants import FINISHED, PAUSED, STARTED

expName = "soak_rows"
expInfo = {
    "participant": "soak",
    "session": "001",
    "seconds": 60,
    "rate": 1000,
    "date|hid": "",
    "expName|hid": expName,
}
TICK = 0.010
FLIP_EVERY = 10


def setupData(expInfo, dataDir=None):
    dataDir = dataDir or os.path.dirname(os.path.abspath(__file__))
    name = f"{expInfo['participant']}_{expName}_{expInfo['date']}"
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
        dataFileName=os.path.join(dataDir, name),
    )


def setupWindow(expInfo=None, win=None):
    win.color = "black"
    return win


def add_row(thisExp, n, elapsed):
    thisExp.addData("row", n)
    thisExp.addData("elapsed", elapsed)
    thisExp.addData("value", (n % 1000) * 0.001)
    thisExp.addData("phase", "soak")
    thisExp.nextEntry()


def endExperiment(thisExp, win=None):
    if win is not None:
        win.flip()
    thisExp.status = FINISHED


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    seconds = float(expInfo["seconds"])
    rate = float(expInfo["rate"])
    start = time.perf_counter()
    paused_for = 0.0
    done = 0
    ticks = 0
    next_tick = start
    while True:
        status = thisExp.status
        if status == FINISHED:
            break
        if status == PAUSED:
            paused_at = time.perf_counter()
            while thisExp.status == PAUSED:
                time.sleep(0.001)
            paused_for += time.perf_counter() - paused_at
            next_tick = time.perf_counter()
            continue
        elapsed = time.perf_counter() - start - paused_for
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) - done
        for _ in range(due):
            add_row(thisExp, done, elapsed)
            done += 1
        if thisSession is not None:
            thisSession.sendExperimentData()
        ticks += 1
        if ticks % FLIP_EVERY == 0:
            win.flip()
        next_tick += TICK
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -10 * TICK:  # far behind (CPU contention): resynchronise, rows catch up by elapsed
            next_tick = time.perf_counter()
    if thisSession is not None:
        thisSession.sendExperimentData()
    endExperiment(thisExp, win=win)
'''


# Bytes an ExperimentHandler keeps per row of the soak experiment (its data for the CSV).
CALIBRATE = r'''
import importlib.util, json, sys, time, tracemalloc
from psychopy import data
spec = importlib.util.spec_from_file_location("soak_rows_calibration", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
info = json.loads(sys.argv[3])
info["date"] = data.getDateStr()
info["expName"] = module.expName
exp = data.ExperimentHandler(name="calibration", extraInfo=info, savePickle=False, saveWideText=False)
n = int(sys.argv[2])
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
t0 = time.perf_counter()
for i in range(n):
    module.add_row(exp, i, time.perf_counter() - t0)
after = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
exp.abort()
print("CALIBRATION " + json.dumps({"rows": n, "bytes_per_row": (after - before) / n}), flush=True)
'''



def write_experiment(root: Path) -> Path:
    """Write the soak experiment into ``root``; its path."""
    path = root / f"{KEY}.py"
    path.write_text(EXPERIMENT, encoding="utf-8")
    return path


def calibrate(experiment: Path, exp_info: dict[str, Any], cwd: Path, rows: int = 20_000) -> dict[str, Any]:
    """Measure, in a separate process, how many bytes PsychoPy's ExperimentHandler keeps per row.

    Returns ``{"rows", "bytes_per_row"}``; raises RuntimeError when the
    measuring process prints no result.
    """
    done = subprocess.run([sys.executable, "-c", CALIBRATE, str(experiment), str(rows), json.dumps(exp_info)],
                          capture_output=True, text=True, timeout=180, cwd=cwd, stdin=subprocess.DEVNULL)
    line = next((text for text in done.stdout.splitlines() if text.startswith("CALIBRATION ")), None)
    if line is None:
        raise RuntimeError((done.stderr or done.stdout)[-500:])
    return json.loads(line.split(" ", 1)[1])
