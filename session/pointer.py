"""Pointer gestures of the simulated participant: aiming at a stimulus, and where to drop a dragged one.

Everything here moves the real pointer (``Mouse.setPos``, a pointer warp
that also updates pyglet's ``_mouse_x``/``_mouse_y``, which every
``Mouse.getPos`` reads) and asks the stimulus itself (``contains``) whether
the pointer is on it, so a simulated click or drag is judged by the same
code that judges a real one. Pixel coordinates are PsychoPy's: origin at
the window centre, y up. Called on the experiment's thread only.
"""

from __future__ import annotations

from typing import Any

DROP_MARGIN = 0.8  # with no drop area, drops land in this central fraction of the window


def point_at(stim, mouse) -> bool:
    """Move the pointer to a point ``stim.contains``; False if none is found (the pointer stays where it went).

    A stimulus's ``pos`` is its anchor, not its middle: a Builder button
    anchored ``bottom-right`` has ``pos`` on its corner, where ``contains``
    (hence ``isPressedIn``, hence ``isClicked``) is False. So the point is
    taken from the stimulus's own hit area, and checked the way the click
    will be checked: ``stim.contains(mouse)`` after the pointer has moved.
    """

    try:
        candidates = hit_area_points(stim)
    except Exception:  # noqa: BLE001 - a stimulus without vertices: try its position
        candidates = []
    try:
        candidates.append(centre_pix(stim))
    except Exception:  # noqa: BLE001 - no usable position either
        pass
    for pix in candidates:
        try:
            move_to(mouse, pix)
            if stim.contains(mouse):
                return True
        except Exception:  # noqa: BLE001 - unusable units, or contains() refuses (rotated text): click here
            return False
    return False


def move_to(mouse, pix) -> None:
    """Warp the pointer to ``pix`` (the Mouse's own pix -> window units conversion, then ``setPos``).

    Then the X server is synced and the window's pending events are handled
    (what the next flip would do): a motion event of an earlier warp still
    queued would otherwise move the pointer back when a later ``getPressed``
    or flip dispatches it, and the click would land where the pointer was.
    """
    import numpy

    mouse.setPos(mouse._pix2windowUnits(numpy.array(pix, dtype=float)))
    handle = getattr(getattr(mouse, "win", None), "winHandle", None)
    display = getattr(handle, "_x_display", None)
    if display is None:
        return
    try:
        from pyglet.libs.x11 import xlib

        xlib.XSync(display, False)  # every event from before (and of) this warp is now queued
        handle.dispatch_events()
    except Exception:  # noqa: BLE001 - not an X window: setPos alone is what we have
        pass


def pointer_pix(mouse):
    """Where the pointer is, in pixels (``Mouse.getPos`` converted back)."""
    import numpy

    return numpy.asarray(mouse._windowUnits2pix(numpy.array(mouse.getPos(), dtype=float)), dtype=float)


def centre_pix(stim):
    """The stimulus's ``pos`` (its anchor point) in pixels: what dragging moves."""
    import numpy
    from psychopy.tools.monitorunittools import convertToPix

    return numpy.asarray(convertToPix(vertices=[0, 0], pos=stim.pos, units=stim.units, win=stim.win), dtype=float)


def hit_area_points(stim) -> list:
    """Pixel points to try, middle first: the polygon ``contains`` tests (a text box's box, a border, vertices)."""
    import numpy

    low, high = hit_box(stim)
    # Only the part inside the window can be clicked: X clamps a pointer warped outside it, and the
    # next motion event moves it to the edge, where contains() may be False (a button half off-screen).
    win = getattr(stim, "win", None)
    if win is not None and getattr(win, "size", None) is not None:
        half = numpy.asarray(win.size, dtype=float) / 2 - 1
        inside_low, inside_high = numpy.maximum(low, -half), numpy.minimum(high, half)
        if (inside_low <= inside_high).all():
            low, high = inside_low, inside_high
    middle = (low + high) / 2
    # then a 3 x 3 grid inside the bounding box (concave or hollow shapes have no middle)
    grid = [low + (high - low) * numpy.array([fx, fy]) for fx in (0.5, 0.25, 0.75) for fy in (0.5, 0.25, 0.75)]
    return [middle, *grid[1:]]


def hit_box(stim):
    """(low, high) pixel corners of the area ``stim.contains`` tests, in the order BaseVisualStim.contains uses."""
    import numpy

    if getattr(stim, "_needVertexUpdate", False):  # as ButtonStim.isClicked does before its test
        stim._updateVertices()
    area = getattr(stim, "box", None)  # TextBox2/ButtonStim: contains() asks its box
    if area is not None and hasattr(area, "verticesPix"):
        poly = numpy.asarray(area.verticesPix, dtype=float)
    elif hasattr(stim, "border"):
        poly = numpy.asarray(stim._borderPix, dtype=float)
    elif hasattr(stim, "boundingBox"):  # TextStim: its text's box around posPix
        (w, h), (x, y) = stim.boundingBox, stim.posPix
        poly = numpy.array([[x - w / 2, y - h / 2], [x + w / 2, y + h / 2]], dtype=float)
    else:
        poly = numpy.asarray(stim.verticesPix, dtype=float)
    return poly.min(axis=0), poly.max(axis=0)


def drop_area(candidates: list[Any], win):
    """(low, high) pixels where dragged things are dropped: the largest shown stimulus that is not draggable.

    A drag-and-drop task draws a board (a grid, a target zone) to drop onto;
    with none, the window's central part stands in.
    """
    import numpy

    best, best_size = None, 0.0
    for stim in candidates:
        try:
            low, high = hit_box(stim)
        except Exception:  # noqa: BLE001 - not drawn yet, no vertices
            continue
        size = float(numpy.prod(high - low))
        if size > best_size:
            best, best_size = (low, high), size
    if best is not None:
        return best
    half = numpy.asarray(win.size, dtype=float) / 2 * DROP_MARGIN
    return -half, half


def drop_point(area, u: float, v: float):
    """The point of ``area`` at fractions ``u``, ``v`` (uniform draws) of its width and height."""
    import numpy

    low, high = area
    return low + (high - low) * numpy.array([u, v])
