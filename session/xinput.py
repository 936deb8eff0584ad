"""Real X input for the simulated participant: XTest key and pointer events on the window's own display.

Some of what an experiment waits on is read outside our process: ioHub's
keyboard and mouse live in the ioHub server, which records the X server's
device events (the XRecord extension, ``psychopy.iohub.devices.pyXHook``).
Nothing done to PsychoPy's objects in our process reaches it. An XTest fake
event does: the X server treats it as a device event, so XRecord delivers it
to ioHub exactly as a real key or pointer movement, and the focused window
gets it too, as it would a real one.

The connection is our own (python-xlib, a dependency of PsychoPy on Linux),
opened on the display the PsychoPy window itself is on: never another
display, never a display of a window that is not X (then there is no
:class:`XInput`). One connection is used from one thread at a time.
"""

from __future__ import annotations

from typing import Any


class XInput:
    """XTest input to the X display of one PsychoPy window; see :func:`for_window`."""

    def __init__(self, display) -> None:
        self._display = display

    def key(self, name: str, down: bool) -> None:
        """Press (``down``) or release the key whose keysym is ``name`` (``space``, ``a``...), and flush."""
        from Xlib import X, XK
        from Xlib.ext import xtest

        keycode = self._display.keysym_to_keycode(XK.string_to_keysym(name))
        if not keycode:
            raise ValueError(f"no key for {name!r} on this display")
        xtest.fake_input(self._display, X.KeyPress if down else X.KeyRelease, keycode)
        self._display.sync()  # the X server has taken it: ioHub's recorder sees it from here on

    def move_root(self, x: int, y: int) -> None:
        """Move the pointer to root-window pixel (``x``, ``y``), as a mouse would (a device motion event)."""
        from Xlib import X
        from Xlib.ext import xtest

        xtest.fake_input(self._display, X.MotionNotify, x=int(round(x)), y=int(round(y)))
        self._display.sync()

    def screen_size(self) -> tuple[int, int]:
        """The root window's size in pixels (what ioHub's Display maps its coordinates onto)."""
        screen = self._display.screen()
        return screen.width_in_pixels, screen.height_in_pixels

    def close(self) -> None:
        """Close our connection (the window's own is untouched)."""
        self._display.close()


def for_window(win: Any) -> XInput | None:
    """An :class:`XInput` on ``win``'s X display, or None (not an X window, no XTest, no python-xlib)."""
    handle = getattr(win, "winHandle", None)
    x_display = getattr(handle, "_x_display", None)
    if x_display is None:
        return None
    try:
        from pyglet.libs.x11 import xlib
        from Xlib import display

        name = xlib.XDisplayString(x_display)  # the display this window was opened on, as Xlib names it
        opened = display.Display(name.decode() if isinstance(name, bytes) else name)
    except Exception:  # noqa: BLE001 - no python-xlib, or the display refuses a second connection
        return None
    if not opened.has_extension("XTEST"):
        opened.close()
        return None
    return XInput(opened)
