"""Builder-style test experiment: forks a child that keeps every inherited file open, then dies.

The child (sleeping) still holds the worker's end of the pipe, so the pipe never
reports end-of-file: only the process itself tells that the worker is gone.
"""
import os
import time

from psychopy import data
from psychopy.constants import STARTED

expName = "forks_then_dies"
expInfo = {"participant": "test", "date|hid": ""}


RUN_DIR = None


def setupData(expInfo, dataDir=None):
    global RUN_DIR
    RUN_DIR = dataDir
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    thisExp.addData("row", 0)
    thisExp.nextEntry()
    thisSession.sendExperimentData()
    child = os.fork()
    if child == 0:  # the grandchild: holds every fd, sleeps (bounded), never runs Python cleanup
        time.sleep(120)
        os._exit(0)
    with open(os.path.join(RUN_DIR, "grandchild.pid"), "w") as handle:
        handle.write(str(child))
    time.sleep(0.5)  # let the row reach the server first
    os._exit(3)  # the worker dies at once, no cleanup
