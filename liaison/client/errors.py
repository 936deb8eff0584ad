"""Exceptions mirroring the protocol's error codes, so callers can catch by kind."""

from __future__ import annotations

from typing import Any


class LiaisonError(Exception):
    """An error reply from the server (or a client-side failure); ``code`` is stable."""

    code = "internal"

    def __init__(self, message: str = "", details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidJson(LiaisonError):
    """The server could not parse a frame as JSON."""

    code = "invalid_json"


class InvalidMessage(LiaisonError):
    """The frame was JSON but not a protocol message (bad envelope, type or version)."""

    code = "invalid_message"


class TooLarge(LiaisonError):
    """The frame exceeded the server's ``max_message_bytes``; it was not parsed."""

    code = "too_large"


class UnknownCommand(LiaisonError):
    """The request's ``cmd`` is not a command this server knows."""

    code = "unknown_command"


class InvalidArgs(LiaisonError):
    """The command's arguments failed validation; ``details`` lists each problem."""

    code = "invalid_args"


class Unauthorized(LiaisonError):
    """The token was missing or wrong, or a request came before ``auth``."""

    code = "unauthorized"


class Forbidden(LiaisonError):
    """An observer sent a controller command, or a path lies outside the session root."""

    code = "forbidden"


class NotFound(LiaisonError):
    """No such experiment, run or other named thing."""

    code = "not_found"


class Conflict(LiaisonError):
    """The command does not fit the current state (e.g. ``pause`` when nothing runs)."""

    code = "conflict"


class Busy(LiaisonError):
    """Another run is in progress, or the session did not answer in time."""

    code = "busy"


class ExperimentFailed(LiaisonError):
    """The experiment file is invalid, cannot compile, or cannot be imported."""

    code = "experiment_error"


class StorageUnavailable(LiaisonError):
    """The server cannot write its journal (e.g. its disk is full); no run starts until it can."""

    code = "storage_unavailable"


class InternalError(LiaisonError):
    """A bug or unexpected failure on the server side (e.g. the worker died)."""

    code = "internal"


class ConnectionLost(LiaisonError):
    """The connection dropped before the reply came; the command may or may not have run."""

    code = "connection_lost"


class RequestTimeout(LiaisonError, TimeoutError):
    """No reply came in time; the command may or may not have been carried out."""

    code = "timeout"


ERRORS: dict[str, type[LiaisonError]] = {
    cls.code: cls
    for cls in (InvalidJson, InvalidMessage, TooLarge, UnknownCommand, InvalidArgs, Unauthorized,
                Forbidden, NotFound, Conflict, Busy, ExperimentFailed, StorageUnavailable, InternalError,
                ConnectionLost)
}


def error_from_body(body: dict[str, Any] | None) -> LiaisonError:
    """The exception for an error reply's body (``code``, ``message``, ``details``).

    Unknown codes give a plain :class:`LiaisonError` that keeps the code; None means ``internal``.
    """
    body = body or {}
    code = str(body.get("code", "internal"))
    cls = ERRORS.get(code, LiaisonError)
    return cls(str(body.get("message", "")), body.get("details"), code=code)
