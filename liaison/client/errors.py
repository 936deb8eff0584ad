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
    code = "invalid_json"


class InvalidMessage(LiaisonError):
    code = "invalid_message"


class TooLarge(LiaisonError):
    code = "too_large"


class UnknownCommand(LiaisonError):
    code = "unknown_command"


class InvalidArgs(LiaisonError):
    code = "invalid_args"


class Unauthorized(LiaisonError):
    code = "unauthorized"


class Forbidden(LiaisonError):
    code = "forbidden"


class NotFound(LiaisonError):
    code = "not_found"


class Conflict(LiaisonError):
    code = "conflict"


class Busy(LiaisonError):
    code = "busy"


class ExperimentFailed(LiaisonError):
    code = "experiment_error"


class StorageUnavailable(LiaisonError):
    """The server cannot write its journal (e.g. its disk is full); no run starts until it can."""

    code = "storage_unavailable"


class InternalError(LiaisonError):
    code = "internal"


class ConnectionLost(LiaisonError):
    """The connection dropped before the reply came; the command may or may not have run."""

    code = "connection_lost"


ERRORS: dict[str, type[LiaisonError]] = {
    cls.code: cls
    for cls in (InvalidJson, InvalidMessage, TooLarge, UnknownCommand, InvalidArgs, Unauthorized,
                Forbidden, NotFound, Conflict, Busy, ExperimentFailed, StorageUnavailable, InternalError,
                ConnectionLost)
}


def error_from_body(body: dict[str, Any] | None) -> LiaisonError:
    body = body or {}
    code = str(body.get("code", "internal"))
    cls = ERRORS.get(code, LiaisonError)
    return cls(str(body.get("message", "")), body.get("details"), code=code)
