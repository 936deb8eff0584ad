"""Builder-style test experiment that opens a file by a path relative to its own folder, as Builder
experiments do with images and sounds ('assets/background.jpg')."""
import os

from psychopy import data
from psychopy.constants import STARTED

expName = "relative_media"
expInfo = {"participant": "test", "date|hid": ""}


def setupData(expInfo, dataDir=None):
    return data.ExperimentHandler(
        name=expName, extraInfo=expInfo, savePickle=False,
        dataFileName=os.path.join(dataDir, "data", f"{expInfo['participant']}_{expName}"),
    )


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    thisExp.status = STARTED
    with open(os.path.join("assets", "word.txt"), encoding="utf-8") as handle:
        thisExp.addData("word", handle.read().strip())
    thisExp.nextEntry()
    thisSession.sendExperimentData()
    win.flip()
