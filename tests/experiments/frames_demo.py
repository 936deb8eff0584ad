"""Builder-style test experiment: a trials loop of fixed frame counts.

It records, in module globals, the frame counter and the frame at which it
observed pause/resume/stop, so tests can check commands land within frames.
"""
import os
import sys
import time

from psychopy import data, visual
from psychopy.constants import FINISHED, PAUSED, STARTED

expName = "frames_demo"
expInfo = {
    "participant": "test",
    "session": "001",
    "n_trials": 5,
    "frames_per_trial": 20,
    "date|hid": "",
    "expName|hid": expName,
}
FRAME = 0
SEEN = []  # (frame, what) as observed by the experiment itself


def setupData(expInfo, dataDir=None):
    dataDir = dataDir or os.path.dirname(os.path.abspath(__file__))
    name = f"{expInfo['participant']}_{expName}_{expInfo['date']}"
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
        dataFileName=os.path.join(dataDir, "data", name),
    )


def setupWindow(expInfo=None, win=None):
    win.color = "black"
    win.units = "height"
    return win


def pauseExperiment(thisExp, win=None, timers=(), currentRoutine=None):
    while thisExp.status == PAUSED:
        time.sleep(0.001)
    if thisExp.status == FINISHED:
        endExperiment(thisExp, win=win)


def endExperiment(thisExp, win=None):
    if win is not None:
        win.clearAutoDraw()
        win.flip()
    thisExp.status = FINISHED


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    global FRAME
    thisExp.status = STARTED
    print(f"frames_demo: {expInfo['n_trials']} trials for {expInfo['participant']}", flush=True)
    sys.stderr.write("frames_demo: a line on stderr\n")
    trials = data.TrialHandler2(
        trialList=[{"i": i} for i in range(int(expInfo["n_trials"]))], nReps=1,
        method="sequential", name="trials", extraInfo=expInfo, originPath=-1, seed=None,
    )
    thisExp.addLoop(trials)
    if thisSession is not None:
        thisSession.sendExperimentData()
    stim = visual.Rect(win, size=0.1, fillColor="white")
    for trial in trials:
        if thisSession is not None:
            thisSession.sendExperimentData()
        frames = 0
        while frames < int(expInfo["frames_per_trial"]):
            if thisExp.status == FINISHED:
                SEEN.append((FRAME, "finished"))
                endExperiment(thisExp, win=win)
                return
            if thisExp.status == PAUSED:
                SEEN.append((FRAME, "paused"))
                pauseExperiment(thisExp, win=win)
                SEEN.append((FRAME, "resumed"))
                continue
            stim.draw()
            win.flip()
            FRAME += 1
            frames += 1
        thisExp.addData("frames", frames)
        thisExp.addData("trial_value", trial["i"] * 10)
        thisExp.nextEntry()
    if thisSession is not None:
        thisSession.sendExperimentData()
    endExperiment(thisExp, win=win)
