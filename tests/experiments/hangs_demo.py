"""Builder-style test experiment that hangs and never reads thisExp.status."""
import os
import time

from psychopy import data
from psychopy.constants import STARTED

expName = "hangs_demo"
expInfo = {"participant": "test", "date|hid": ""}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    thisExp.addData("row", 0)
    thisExp.nextEntry()
    thisSession.sendExperimentData()
    deadline = time.monotonic() + 600  # bounded, but far beyond any test's patience
    while time.monotonic() < deadline:
        time.sleep(0.01)
