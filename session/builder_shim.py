"""What Builder-generated code sees as ``thisSession``: PsychoPy's camelCase API.

Builder scripts call ``thisSession.sendExperimentData()`` in every loop
iteration and ``thisSession.stop()`` from ``quit()``; code components may call
more of ``psychopy.session.Session``. This is the one place camelCase lives;
everything forwards to :class:`session.Session`.
"""

from __future__ import annotations

from typing import Any


class BuilderSessionShim:
    def __init__(self, session) -> None:
        self._session = session

    # called by Builder's generated loops and quit()
    def sendExperimentData(self, key: str | None = None) -> bool:
        return self._session.send_experiment_data() > 0

    def stop(self) -> None:
        """Builder's quit() asks the host to stop; the session outlives one experiment."""

    # psychopy.session.Session methods code components may use
    @property
    def win(self):
        return self._session.windows.win

    @property
    def root(self):
        return self._session.root

    @property
    def dataDir(self):
        return self._session.data_dir

    def getTime(self, format=None):
        """Session time: seconds since the session started, or wall-clock time as the session's clock says."""
        if format is None and self._session.clock_format == "float":
            return self._session.time()
        from .clock import make_clock

        clock = make_clock(self._session.clock_format)
        clock.reset(-self._session.time())  # the same instant as the session clock
        return clock.getTime(format=format)

    def addData(self, name: str, value: Any, row=None, priority=None) -> bool:
        return self._session.add_data(name, value).result()

    def addAnnotation(self, value: str) -> bool:
        return self._session.annotate(value).result()

    def getCurrentExpInfo(self) -> dict:
        return self._session.get_exp_info()

    def getCurrentExpInfoItem(self, key: str):
        return self._session.get_exp_info().get(key)

    def setCurrentExpInfoItem(self, key: str, value: Any) -> bool:
        self._session.set_exp_info_item(key, value).result()
        return True

    def updateCurrentExpInfo(self, other: dict) -> bool:
        self._session.update_exp_info(other).result()
        return True

    def pauseExperiment(self) -> bool:
        self._session.pause().result()
        return True

    def resumeExperiment(self) -> bool:
        self._session.resume().result()
        return True

    def stopExperiment(self) -> bool:
        self._session.stop().result()
        return True

    def getCurrentTrial(self, asDict: bool = True):
        return self._session.current_trial().result()

    def getFutureTrials(self, n: int = 1, start: int = 0, asDict: bool = True):
        return self._session.future_trials(n, start).result()

    def skipTrials(self, n: int = 1):
        return self._session.skip_trials(n).result()

    def rewindTrials(self, n: int = 1):
        return self._session.rewind_trials(n).result()

    def getStatus(self) -> str:
        return self._session.status
