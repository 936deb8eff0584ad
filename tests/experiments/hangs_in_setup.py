"""Builder-style test experiment whose setupWindow hangs: nothing of run() ever happens."""
import os
import time

from psychopy import data

expName = "hangs_in_setup"
expInfo = {"participant": "test", "date|hid": ""}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def setupWindow(expInfo=None, win=None):
    deadline = time.monotonic() + 600  # bounded, but far beyond any test's patience
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return win


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    raise AssertionError("never reached")
