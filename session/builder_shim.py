"""What Builder-generated code sees as ``thisSession``: PsychoPy's camelCase API.

Builder scripts call ``thisSession.sendExperimentData()`` in every loop
iteration and ``thisSession.stop()`` from ``quit()``; code components may call
more of ``psychopy.session.Session``. This is the one place camelCase lives;
everything forwards to :class:`session.Session`.
"""

from __future__ import annotations

from typing import Any


class BuilderSessionShim:
    """``thisSession`` for Builder code: PsychoPy's ``Session`` API on a :class:`session.Session`.

    Called on the experiment's thread; commands the session would run at the next frame
    run there at once, so the methods that wait for a result never wait on themselves.
    """

    def __init__(self, session) -> None:
        self._session = session

    # called by Builder's generated loops and quit()
    def sendExperimentData(self, key: str | None = None) -> bool:
        """Publish rows completed since the last call (a trial boundary); True if there were any.

        ``key`` is ignored. On the experiment's thread it is also where the GC guard collects.
        """
        return self._session.send_experiment_data() > 0

    def stop(self) -> None:
        """Builder's quit() asks the host to stop; the session outlives one experiment."""

    # psychopy.session.Session methods code components may use
    @property
    def win(self):
        """The session's persistent window."""
        return self._session.windows.win

    @property
    def root(self):
        """The session root (experiments live under it)."""
        return self._session.root

    @property
    def dataDir(self):
        """The session's data folder (each run writes to ``runs/<run_id>/`` inside it)."""
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
        """Add ``value`` to the current data row; True. ``row`` and ``priority`` are ignored.

        Raises Conflict when no run is active, ValueError for an empty name.
        """
        return self._session.add_data(name, value).result()

    def addAnnotation(self, value: str) -> bool:
        """Note ``value`` in the log and the current row's ``notes``; True."""
        return self._session.annotate(value).result()

    def getCurrentExpInfo(self) -> dict:
        """A copy of the running run's expInfo (the session params between runs)."""
        return self._session.get_exp_info()

    def getCurrentExpInfoItem(self, key: str):
        """One expInfo value, or None if the key is absent."""
        return self._session.get_exp_info().get(key)

    def setCurrentExpInfoItem(self, key: str, value: Any) -> bool:
        """Set one expInfo value (live during a run, else for the next runs) and publish the change; True."""
        self._session.set_exp_info_item(key, value).result()
        return True

    def updateCurrentExpInfo(self, other: dict) -> bool:
        """Merge ``other`` into expInfo and publish the change; True. Raises TypeError if not a dict."""
        self._session.update_exp_info(other).result()
        return True

    def pauseExperiment(self) -> bool:
        """Pause the run; True. Raises Conflict if it is not running or already stopping."""
        self._session.pause().result()
        return True

    def resumeExperiment(self) -> bool:
        """Resume the paused run; True. Raises Conflict if it is not paused."""
        self._session.resume().result()
        return True

    def stopExperiment(self) -> bool:
        """End the run at its next status read, saving its data; True. Raises Conflict if already stopping."""
        self._session.stop().result()
        return True

    def getCurrentTrial(self, asDict: bool = True):
        """The current trial as a dict (``asDict`` is ignored), or None outside a loop."""
        return self._session.current_trial().result()

    def getFutureTrials(self, n: int = 1, start: int = 0, asDict: bool = True):
        """Up to ``n`` upcoming trials after skipping ``start``, as dicts (``asDict`` is ignored)."""
        return self._session.future_trials(n, start).result()

    def skipTrials(self, n: int = 1):
        """Skip the next ``n`` trials of the current loop (see :meth:`session.Session.skip_trials`)."""
        return self._session.skip_trials(n).result()

    def rewindTrials(self, n: int = 1):
        """Go back ``n`` trials in the current loop (see :meth:`session.Session.rewind_trials`)."""
        return self._session.rewind_trials(n).result()

    def getStatus(self) -> str:
        """The session's status word (``idle``, ``running``, ``paused``, ...), not a PsychoPy constant."""
        return self._session.status
