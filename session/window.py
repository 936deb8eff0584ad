"""The session's one persistent PsychoPy window, and its rest screen.

Opening a window costs seconds and can move the display; experiments run one
after another in the same window. It is recreated only when a parameter that
cannot change on a live window (size, screen, fullscreen, backend...) does.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import WrongThread

# Parameters a live window cannot take; changing one recreates the window.
RECREATE = ("size", "fullscr", "screen", "win_type", "monitor", "use_fbo", "allow_stencil")


@dataclass(frozen=True, slots=True)
class WindowParams:
    """What the session window is opened with; frozen, so a change is a new value.

    Changing any field in ``RECREATE`` reopens the window; the others apply live.
    """

    size: tuple[int, int] = (800, 600)
    fullscr: bool = False
    screen: int = 0
    win_type: str = "pyglet"
    monitor: str = "testMonitor"
    color: str = "grey"
    units: str = "height"
    use_fbo: bool = True
    allow_stencil: bool = True
    # Frame rate to report to experiments; None measures it once per window.
    frame_rate: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "WindowParams":
        """Parameters from a plain dict, defaults for what it lacks.

        Raises ValueError for unknown names or a ``size`` that is not two positive integers;
        other values are not type-checked here.
        """
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown window parameter(s): {', '.join(unknown)}")
        if "size" in data:
            size = tuple(int(v) for v in data["size"])
            if len(size) != 2 or min(size) < 1:
                raise ValueError("window size must be two positive integers")
            data["size"] = size
        return cls(**data)

    def updated(self, changes: dict[str, Any] | None) -> "WindowParams":
        """A copy with ``changes`` applied, validated as :meth:`from_dict` does."""
        merged = {**asdict(self), **(changes or {})}
        return WindowParams.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (``size`` as a list)."""
        data = asdict(self)
        data["size"] = list(self.size)
        return data


class WindowHost:
    """Owns the window; every method must run on the thread that made it (main)."""

    def __init__(self, params: WindowParams | None = None, rest_message: str = "") -> None:
        self.params = params or WindowParams()
        self.rest_message = rest_message
        self.win = None
        self._thread: threading.Thread | None = None
        self._rest_shown = False
        self.measured_rate: float | None = None  # getActualFrameRate when the window opened

    def _check_thread(self) -> None:
        if self._thread is not None and threading.current_thread() is not self._thread:
            raise WrongThread("the window can only be used from the thread that opened it")

    def ensure(self, params: WindowParams | None = None):
        """Return an open window matching ``params``, opening or reopening it if needed."""
        self._check_thread()
        new = params or self.params
        if self.win is not None and not self.win._closed:
            if all(getattr(new, name) == getattr(self.params, name) for name in RECREATE):
                self.params = new
                self._apply_live(new)
                return self.win
            self.close()
        self.params = new
        self.win = self._open(new)
        self._thread = threading.current_thread()
        return self.win

    def _open(self, p: WindowParams):
        from psychopy import visual

        win = visual.Window(
            size=list(p.size), fullscr=p.fullscr, screen=p.screen, winType=p.win_type,
            monitor=p.monitor, color=p.color, colorSpace="rgb", units=p.units,
            useFBO=p.use_fbo, allowStencil=p.allow_stencil, allowGUI=not p.fullscr,
            checkTiming=False,
        )
        # Measured once per window even when the lab states the rate: runs' timing reports both.
        self.measured_rate = win.getActualFrameRate(nIdentical=5, nMaxFrames=60, nWarmUpFrames=5)
        rate = p.frame_rate if p.frame_rate is not None else (self.measured_rate or 60.0)
        # Builder's setupWindow measures again when this is None: seconds lost per run.
        win._monitorFrameRate = float(rate)
        self._rest_shown = False
        return win

    def _apply_live(self, p: WindowParams) -> None:
        self.win.color = p.color
        self.win.units = p.units
        if p.frame_rate is not None:
            self.win._monitorFrameRate = float(p.frame_rate)

    def prepare_for_run(self):
        """Clear the rest screen and hold any stray autodraw stimuli."""
        win = self.ensure()
        win.hideMessage()
        win.flip()
        win.stashAutoDraw()
        self._rest_shown = False
        return win

    def after_run(self) -> None:
        """Clean the window after a run: drop every autodraw stimulus, reset units, show the rest screen.

        No-op without an open window; window thread only.
        """
        if self.win is None or self.win._closed:
            return
        try:
            self.win.retrieveAutoDraw()
        except Exception:  # noqa: BLE001 - a stimulus an experiment broke must not keep the window dirty
            pass
        self.win.clearAutoDraw()
        self.win.units = self.params.units
        self.show_rest()

    def show_rest(self) -> None:
        """Draw the rest screen (between runs) and flip once."""
        if self.win is None or self.win._closed:
            return
        self.win.color = self.params.color
        if self.rest_message:
            self.win.showMessage(self.rest_message)
        self.win.flip()
        self._rest_shown = True

    def idle(self) -> None:
        """Keep the window alive between runs without burning frames."""
        if self.win is None or self.win._closed:
            return
        if not self._rest_shown:
            self.show_rest()
            return
        handle = getattr(self.win, "winHandle", None)
        dispatch = getattr(handle, "dispatch_events", None)
        if dispatch is not None:
            dispatch()

    def describe(self) -> dict[str, Any]:
        """The window's parameters, whether it is open and, if so, the frame rate experiments are told."""
        data = self.params.to_dict()
        data["open"] = self.win is not None and not self.win._closed
        if data["open"]:
            data["actual_frame_rate"] = self.win._monitorFrameRate
            data["measured_frame_rate"] = self.measured_rate
        return data

    def close(self) -> None:
        """Close the window if open and forget its thread, so the next :meth:`ensure` may open one anywhere."""
        if self.win is not None and not self.win._closed:
            self.win.close()
        self.win = None
        self._thread = None
