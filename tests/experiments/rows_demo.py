"""Builder-style test experiment: data rows as fast as it can, each with a payload of a set size."""
import os

from psychopy import data
from psychopy.constants import FINISHED, STARTED

expName = "rows_demo"
expInfo = {"participant": "test", "n_trials": 100, "payload": 100, "date|hid": ""}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False, saveWideText=True,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    payload = "x" * int(expInfo["payload"])
    for i in range(int(expInfo["n_trials"])):
        if thisExp.status == FINISHED:
            break
        thisExp.addData("i", i)
        thisExp.addData("payload", payload)
        thisExp.nextEntry()
        thisSession.sendExperimentData()
        win.flip()


def saveData(thisExp):
    thisExp.saveAsWideText(thisExp.dataFileName + ".csv", delim="auto")
