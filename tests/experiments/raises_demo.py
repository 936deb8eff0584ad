"""Builder-style test experiment that fails after one trial."""
import os

from psychopy import data
from psychopy.constants import STARTED

expName = "raises_demo"
expInfo = {"participant": "test", "date|hid": ""}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    thisExp.addData("before_error", 1)
    thisExp.nextEntry()
    thisSession.sendExperimentData()
    win.flip()
    raise RuntimeError("deliberate failure in raises_demo")
