"""Error codes, the exception that carries them, and WebSocket close codes.

Every failure a client can see has a stable machine-readable ``code``; the
message is for humans and may change. Close codes tell a client why the
server ended a connection, so it can decide whether reconnecting makes sense.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Any


class ErrorCode(str, Enum):
    """Why a request (or an unreadable message) failed; sent as ``error.code``."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    TOO_LARGE = "too_large"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_ARGS = "invalid_args"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    BUSY = "busy"
    EXPIRED = "expired"
    EXPERIMENT_ERROR = "experiment_error"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    DEVICE_ERROR = "device_error"
    INTERNAL = "internal"

    def __str__(self) -> str:  # (str, Enum) would print "ErrorCode.X" on 3.11+
        return self.value


ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "The frame is not valid JSON (NaN and Infinity are not JSON).",
    ErrorCode.INVALID_MESSAGE: (
        "Valid JSON but not a protocol message: not an object, not UTF-8, nested too deeply, "
        "unknown or missing `type`, wrong `v`, bad envelope fields, or a second `auth`."
    ),
    ErrorCode.TOO_LARGE: "The frame is larger than `max_message_bytes` (see `hello`); it was not parsed.",
    ErrorCode.UNKNOWN_COMMAND: "The request's `cmd` is not a command this server knows.",
    ErrorCode.INVALID_ARGS: "The command's `args` failed validation; `details` lists each problem.",
    ErrorCode.UNAUTHORIZED: "Missing or wrong token, or a request sent before `auth`.",
    ErrorCode.FORBIDDEN: (
        "Not allowed: an observer sent a controller command, or a path lies outside the session root."
    ),
    ErrorCode.NOT_FOUND: "No such experiment, run or other named thing.",
    ErrorCode.CONFLICT: "The command does not fit the current state (e.g. `pause` when nothing runs).",
    ErrorCode.BUSY: "Another run is in progress, or the session did not answer in time.",
    ErrorCode.EXPIRED: "The request arrived after its `not_after` deadline; it was not carried out.",
    ErrorCode.EXPERIMENT_ERROR: "The experiment file is invalid, cannot compile, or cannot be imported.",
    ErrorCode.STORAGE_UNAVAILABLE: (
        "The server cannot write its journal (e.g. the disk is full): no run starts until it can again."
    ),
    ErrorCode.DEVICE_ERROR: "A device could not be created, found or used; the message is the device's own.",
    ErrorCode.INTERNAL: "A bug or an unexpected failure on the server side (e.g. the worker died).",
}


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; 4000-4999 are application-defined."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    AUTH_FAILED = 4001
    AUTH_TIMEOUT = 4002
    FORBIDDEN_ORIGIN = 4003
    SLOW_CONSUMER = 4008
    PROTOCOL_VIOLATION = 4009


CLOSE_DESCRIPTIONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "Normal closure.",
    CloseCode.GOING_AWAY: "The server is shutting down; reconnect later.",
    CloseCode.POLICY: "Generic policy violation.",
    CloseCode.AUTH_FAILED: "Missing or wrong token. Reconnecting with the same token will fail again.",
    CloseCode.AUTH_TIMEOUT: "No `auth` message arrived in time after `hello`.",
    CloseCode.FORBIDDEN_ORIGIN: "The browser's `Origin` is not allowed. Reconnecting will fail again.",
    CloseCode.SLOW_CONSUMER: (
        "The client did not read events fast enough and its queue overflowed; reconnect with "
        "`since` to catch up."
    ),
    CloseCode.PROTOCOL_VIOLATION: "The first message was not a valid `auth` message.",
}


class ProtocolError(Exception):
    """A failure to report to the client as an error reply.

    ``request_id`` is the offending request's ``id`` when it could be read, so
    the client can match the error to its request; otherwise ``None``.
    ``details`` must be JSON-able (or made so by the codec before sending).
    """

    def __init__(self, code: ErrorCode | str, message: str, details: Any = None, *,
                 request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details
        self.request_id = request_id

    def __repr__(self) -> str:
        return (f"ProtocolError({self.code.value!r}, {self.message!r}, "
                f"request_id={self.request_id!r})")


# Session error ``code`` attributes (session/errors.py) -> protocol error codes.
_SESSION_CODES: dict[str, ErrorCode] = {
    "not_found": ErrorCode.NOT_FOUND,
    "forbidden": ErrorCode.FORBIDDEN,
    "experiment_error": ErrorCode.EXPERIMENT_ERROR,
    "device_error": ErrorCode.DEVICE_ERROR,
    "conflict": ErrorCode.CONFLICT,
    "busy": ErrorCode.BUSY,
    "internal": ErrorCode.INTERNAL,
    "invalid_args": ErrorCode.INVALID_ARGS,
    "storage_unavailable": ErrorCode.STORAGE_UNAVAILABLE,
}


def error_code_for(session_code: str | None) -> ErrorCode:
    """The protocol code for a session error's ``code``; unknown codes are ``internal``.

    Anything else (e.g. the worker's ``unknown_command`` for a method it lacks)
    is a server bug from the client's point of view, hence ``internal``.
    """
    return _SESSION_CODES.get(session_code or "", ErrorCode.INTERNAL)
