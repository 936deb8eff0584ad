"""The session clock, with ``psychopy.session.Session(clock=...)``'s meanings.

``"float"`` (the default): seconds since the run started, as a number.
``"iso"``: wall-clock time in ISO 8601 (PsychoPy's ``Clock(format=str)``).
Any other string: a ``time.strftime`` format for wall-clock time, e.g.
``"%H:%M:%S"``. The choice sets how Builder stamps ``thisRow.t`` and the
run log (Builder's ``run()`` makes the clock we pass its ``globalClock``, its
logging clock and, when it uses ioHub, syncs ioHub's clock to it); it is
recorded in every run's manifest.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import SessionError

FLOAT, ISO = "float", "iso"


class InvalidClock(SessionError):
    """A ``clock`` setting that is not float, iso or a strftime format."""
    code = "invalid_args"


def check_clock(spec: Any) -> str:
    """``spec`` if it is ``float``, ``iso`` or a usable strftime format; else :class:`InvalidClock`."""
    if spec is None:
        return FLOAT
    if not isinstance(spec, str) or not spec:
        raise InvalidClock(f"clock must be 'float', 'iso' or a strftime format, not {spec!r}")
    if spec in (FLOAT, ISO):
        return spec
    if "%" not in spec:
        raise InvalidClock(f"clock {spec!r} is neither 'float' nor 'iso' and has no strftime directive "
                           "(e.g. '%Y-%m-%d %H:%M:%S.%f')")
    try:
        time.strftime(spec)
    except ValueError as exc:
        raise InvalidClock(f"clock {spec!r} is not a valid strftime format: {exc}") from None
    return spec


def make_clock(spec: str):
    """A fresh ``psychopy.core.Clock`` that reports time as ``spec`` says (see module docstring)."""
    from psychopy import core

    spec = check_clock(spec)
    if spec == FLOAT:
        return core.Clock()
    if spec == ISO:
        return core.Clock(format=str)
    return core.Clock(format=spec)


def sync_iohub(clock) -> bool:
    """Bring a running ioHub server's clock in step with ``clock`` (PsychoPy does this at each run)."""
    try:
        from psychopy.hardware import DeviceManager
    except Exception:  # noqa: BLE001
        return False
    io_server = getattr(DeviceManager, "ioServer", None)
    if io_server is None:
        return False
    io_server.syncClock(clock)
    return True


def describe(spec: str) -> dict[str, Any]:
    """What the manifest records about the clock."""
    return {"format": spec, "meaning": {FLOAT: "seconds since the run started", ISO: "ISO 8601 wall-clock time"}
            .get(spec, "wall-clock time, strftime format")}
