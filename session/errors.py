"""Errors the session raises, each with a stable ``code`` the server can forward."""

from __future__ import annotations


class SessionError(Exception):
    """Base class; ``code`` names the kind of problem for machines."""

    code = "internal"


class NotFound(SessionError):
    """No experiment (or file) with that key or path."""

    code = "not_found"


class PathOutsideRoot(SessionError):
    """A path resolves outside the session root (after following symlinks); refused."""

    code = "forbidden"


class ExperimentError(SessionError):
    """An experiment file is invalid, cannot compile, or cannot be imported."""

    code = "experiment_error"


class Conflict(SessionError):
    """The request does not fit the current state (e.g. pause when nothing runs)."""

    code = "conflict"


class Busy(SessionError):
    """Another run is in progress."""

    code = "busy"


class WrongThread(SessionError):
    """A window operation was called off the thread that opened the window (the main thread)."""

    code = "internal"
