"""Builder-style test experiment with one deliberately slow frame.

``frames_per_trial`` unpaced frames per trial; in trial ``slow_trial`` the
frame ``slow_frame`` takes ``slow_ms`` longer (a sleep before its flip), as a
stimulus that is slow to prepare would. Its timing report must name it.
"""
import os
import time

from psychopy import data, visual
from psychopy.constants import FINISHED, STARTED

expName = "slow_frame_demo"
expInfo = {"participant": "test", "n_trials": 4, "frames_per_trial": 15, "slow_trial": 2, "slow_frame": 5,
           "slow_ms": 80, "date|hid": "", "expName|hid": expName}


def setupData(expInfo, dataDir=None):
    dataDir = dataDir or os.path.dirname(os.path.abspath(__file__))
    return data.ExperimentHandler(name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
                                  dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"))


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="comma")


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    trials = data.TrialHandler2(trialList=[{"i": i} for i in range(int(expInfo["n_trials"]))], nReps=1,
                                method="sequential", name="trials", extraInfo=expInfo, originPath=-1, seed=None)
    thisExp.addLoop(trials)
    stim = visual.Rect(win, size=0.1, fillColor="white")
    for trial in trials:
        if thisSession is not None:
            thisSession.sendExperimentData()
        for frame in range(int(expInfo["frames_per_trial"])):
            if thisExp.status == FINISHED:
                return
            stim.draw()
            if trial["i"] == int(expInfo["slow_trial"]) and frame == int(expInfo["slow_frame"]):
                time.sleep(float(expInfo["slow_ms"]) / 1e3)
            win.flip()
        thisExp.addData("trial_value", trial["i"])
        thisExp.nextEntry()
    if thisSession is not None:
        thisSession.sendExperimentData()
