"""The simulated participant in ioHub eye-tracking experiments: calibration keys and gaze.

With an ioHub eye tracker (MouseGaze stands in for one without hardware),
two things an experiment waits on are read in ioHub's server process, from
the X server's device events (see :mod:`session.xinput`):

- the calibration (``eyetracker.runSetupProcedure``, which Builder's
  calibration routine ``EyetrackerCalibration.run`` calls) runs entirely in
  the ioHub server, in its own window: "Press SPACE to Start Calibration",
  then the targets (auto-paced, or one SPACE each), then "Calibration
  Complete. Press 'SPACE' key to continue", every SPACE read as a key
  release by ioHub's keyboard. The experiment's thread is blocked in that
  one call meanwhile, so the keys come from a thread of ours that lives only
  for the call: it presses SPACE (XTest) once per drawn RT until the call
  returns. SPACE is what every stage takes; a press while targets are shown
  auto-paced is one PsychoPy's procedure reads and drops. The experiment's
  own frame loop is not running during the call, so nothing is done in it.
- gaze on a region of interest (``visual.ROI``): MouseGaze's gaze is ioHub's
  mouse position. At its RT after the ROI's onset the pointer is moved onto
  it by an XTest motion event (on the experiment's thread, between flips: one
  X request), to the screen point that ioHub's Display maps to the ROI's
  position, and left there, as a participant holds their gaze.

Escape is never pressed (it aborts the calibration).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any

from . import pointer, xinput

CALIBRATION = "calibration"  # the component name the calibration's presses are logged (and drawn) under
CALIBRATION_KEY = "space"


def open_window():
    """The PsychoPy window open in this process (the session's), or None."""
    from psychopy.visual import window

    for ref in list(getattr(window, "openWindows", [])):
        win = ref() if callable(ref) else ref
        if win is not None:
            return win
    return None


def gaze_root_point(win, pix, screen_size: tuple[int, int]) -> tuple[float, float]:
    """The root-window pixel ioHub maps to window point ``pix`` (PsychoPy pixels from the window's centre).

    ioHub's Display converts a pointer position on the whole screen into the
    window's units with the *screen's* size (``Display._calculateCoordMappingFunctions``):
    for a full-screen window that is the window's own point; for a smaller
    window ``norm`` and ``height`` positions are scaled by screen/window. Pixels,
    degrees and cm are converted with the same monitor on both sides.
    """
    width, height = screen_size
    win_w, win_h = (float(v) for v in win.size)
    units = getattr(win, "units", "pix")
    if units == "norm":
        scale = (width / win_w, height / win_h)
    elif units == "height":
        scale = (height / win_h, height / win_h)
    else:
        scale = (1.0, 1.0)
    return width / 2 + float(pix[0]) * scale[0], height / 2 - float(pix[1]) * scale[1]


class Eyetracking:
    """The eye-tracking part of one :class:`session.simulate.Simulator` (which draws and logs for it)."""

    def __init__(self, simulator) -> None:
        self.sim = simulator
        self._gaze_input: xinput.XInput | None = None  # the experiment thread's connection
        self._calibrations = 0

    # calibration ------------------------------------------------------------------------
    @contextmanager
    def calibrating(self):
        """Around one ``runSetupProcedure`` call: a thread presses SPACE until the call returns."""
        win = open_window()
        keys = xinput.for_window(win) if win is not None else None
        if keys is None:  # not an X window: nothing real to press with
            yield
            return
        done = threading.Event()
        presser = threading.Thread(target=self._press_until, args=(keys, done), daemon=True,
                                   name="liaison-sim-calibration")
        presser.start()
        try:
            yield
        finally:
            done.set()
            presser.join()
            keys.close()
            self._calibrations += 1

    def _press_until(self, keys: xinput.XInput, done: threading.Event) -> None:
        """Press and release SPACE, one drawn RT apart, until ``done`` (the calibration has returned)."""
        from psychopy import clock

        press = 0
        while not done.is_set():
            episode = self.sim._episode((CALIBRATION, self._calibrations, press), CALIBRATION, None,
                                        clock.getTime())
            if done.wait(episode.decision.rt):  # the participant's RT to what the screen asks
                return
            keys.key(CALIBRATION_KEY, True)
            try:
                done.wait(self.sim.policy.hold)
            finally:
                keys.key(CALIBRATION_KEY, False)  # ioHub's procedure acts on the release
            self.sim._record(episode, "iohub_key", CALIBRATION_KEY, episode.decision.rt, None)
            press += 1

    # gaze -----------------------------------------------------------------------------------
    def look(self, name: str, roi, now: float) -> None:
        """At its RT after ``roi``'s onset, move the pointer (ioHub's mouse, MouseGaze's gaze) onto it."""
        from psychopy.constants import STARTED

        if getattr(roi, "status", None) != STARTED:
            return
        episode = self.sim._episode(id(roi), name, getattr(roi, "tStart", None), now)
        if episode.delivered or not _flipped(episode, roi.win):
            return
        if not episode.decision.respond:
            self.sim._record(episode, "gaze", None, None, None)
            return
        if now - episode.first_seen < episode.decision.rt:
            return
        if self._gaze_input is None:
            self._gaze_input = xinput.for_window(roi.win)
            if self._gaze_input is None:
                self.sim._record(episode, "gaze", None, None, None)  # no X display to move a pointer on
                return
        point = pointer.hit_area_points(roi)[0]  # the middle of what contains() tests
        x, y = gaze_root_point(roi.win, point, self._gaze_input.screen_size())
        self._gaze_input.move_root(x, y)
        self.sim._record(episode, "gaze", getattr(roi, "name", name), episode.decision.rt, None)

    def close(self) -> None:
        """Close the gaze connection (after the run)."""
        if self._gaze_input is not None:
            self._gaze_input.close()
            self._gaze_input = None


def _flipped(episode, win) -> bool:
    from .simulate import _flipped_since

    return _flipped_since(episode, win)


def wrap_setup_procedure(eyetracking: Eyetracking, patch) -> None:
    """Wrap ioHub's device RPC so a ``runSetupProcedure`` call runs inside :meth:`Eyetracking.calibrating`.

    ``patch(owner, name, replacement)`` is the simulator's (restored after the run).
    Every other RPC (``getPos`` each frame) costs one string comparison more.
    """
    try:
        from psychopy.iohub.client import DeviceRPC
    except ImportError:  # a PsychoPy without ioHub's client: no calibration to answer
        return

    original = DeviceRPC.__call__

    def call(this, *args: Any, **kwargs: Any):
        if this.method_name != "runSetupProcedure":
            return original(this, *args, **kwargs)
        with eyetracking.calibrating():
            return original(this, *args, **kwargs)

    patch(DeviceRPC, "__call__", call)
