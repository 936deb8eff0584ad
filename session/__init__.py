"""Liaison's session engine: runs PsychoPy experiments on the main thread.

It knows nothing of networks; :mod:`session.worker` hosts a Session in a
child process that a server can supervise. See :class:`session.Session`.
Heavy parts (PsychoPy) load on first use, so a supervising process can use
the events and the worker host without importing PsychoPy itself.
"""

from importlib import import_module

from .errors import Busy, Conflict, ExperimentError, NotFound, PathOutsideRoot, SessionError
from .events import EVENT_TYPES, Event, Publisher

_LAZY = {
    "Session": ".session", "RunResult": ".session", "WindowParams": ".window",
    "MainThreadQueue": ".mainloop", "WorkerHost": ".worker",
}

__all__ = [
    "Busy", "Conflict", "EVENT_TYPES", "Event", "ExperimentError", "NotFound", "PathOutsideRoot",
    "Publisher", "SessionError", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'session' has no attribute {name!r}")
