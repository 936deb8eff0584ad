"""Bytes in, models out: the only place raw client input is parsed.

``parse_client_message`` turns anything a client can send into a validated
``Auth`` or ``Request``, or raises ``ProtocolError`` with the code the client
should see; it never raises anything else. Frames may be text or binary; a
binary frame is accepted when it is UTF-8 JSON, exactly like a text frame.
``parse_server_message`` is the other direction, for clients and tests.
"""

from __future__ import annotations

import json
import math
from typing import Any, Union

from pydantic import TypeAdapter, ValidationError

from .commands import COMMANDS, REQUEST_ADAPTER, Request
from .errors import ErrorCode, ProtocolError
from .jsonable import errors_jsonable
from .messages import Auth, EventMessage, RequestId, ServerMessage

MAX_MESSAGE_BYTES = 1 << 20
MAX_DEPTH = 32  # nesting of arrays/objects in a client message, the envelope included

_REQUEST_ID = TypeAdapter(RequestId)
_SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerMessage)
_EVENT_BATCH = TypeAdapter(list[EventMessage])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _byte_size_over(raw: str | bytes, max_bytes: int) -> int | None:
    """The frame's size in bytes if it exceeds ``max_bytes``, else None (cheap for small frames)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        size = len(raw)
    elif len(raw) * 4 <= max_bytes:  # UTF-8 never needs more than 4 bytes per character
        return None
    elif len(raw) > max_bytes:
        size = len(raw)
    else:
        size = len(raw.encode("utf-8", "surrogatepass"))
    return size if size > max_bytes else None


def _loads(raw: str | bytes, max_bytes: int) -> tuple[Any, bool]:
    """The parsed JSON value, and whether it may nest more than MAX_DEPTH levels."""
    size = _byte_size_over(raw, max_bytes)
    if size is not None:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"message of {size} bytes exceeds the limit of {max_bytes} bytes",
                            {"max_bytes": max_bytes})
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"message is not UTF-8: {exc.reason}") from None
    elif isinstance(raw, str):
        text = raw
    else:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"unsupported frame type {type(raw).__name__}")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"message is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, huge numbers
        raise ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {exc}") from None
    # Cheap pre-check: with few brackets in the text the value cannot nest deeply.
    may_be_deep = text.count("[") + text.count("{") > MAX_DEPTH
    return value, may_be_deep


def _readable_id(message: dict[str, Any]) -> str | int | None:
    """The request id if it is a valid one, so errors can echo it; else None."""
    try:
        return _REQUEST_ID.validate_python(message.get("id"))
    except ValidationError:
        return None


def parse_client_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Union[Auth, Request]:
    """Validate one frame from a client; raise ``ProtocolError`` (only) on any problem.

    Checked in order: size (before parsing), UTF-8, JSON, nesting depth, envelope
    (object, ``v`` == 1, ``type``), then for requests ``id``, ``cmd`` and ``args``.
    """
    try:
        return _parse(raw, max_bytes)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser bug must still be a protocol error
        raise ProtocolError(ErrorCode.INTERNAL, f"could not parse message: {type(exc).__name__}") from exc


def _parse(raw: str | bytes, max_bytes: int) -> Union[Auth, Request]:
    message, may_be_deep = _loads(raw, max_bytes)
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"a message must be a JSON object, not {type(message).__name__}")
    kind = message.get("type")
    request_id = _readable_id(message) if kind == "request" else None
    if may_be_deep and _too_deep(message, MAX_DEPTH):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"message is nested deeper than {MAX_DEPTH} levels",
                            request_id=request_id)
    version = message.get("v")
    if type(version) is not int or version != 1:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"unsupported protocol version {_short(version)}; expected 1",
                            request_id=request_id)
    if kind == "auth":
        try:
            return Auth.model_validate(message)
        except ValidationError as exc:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "invalid auth message",
                                errors_jsonable(exc)) from None
    if kind != "request":
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"unknown message type {_short(kind)}; expected \"auth\" or \"request\"")
    if request_id is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            "a request needs an \"id\": a string of at most 64 characters or an integer")
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a request needs a \"cmd\" string",
                            request_id=request_id)
    if cmd not in COMMANDS:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {_short(cmd)}",
                            {"commands": sorted(COMMANDS)}, request_id=request_id)
    try:
        return REQUEST_ADAPTER.validate_python(message)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # Discriminated union errors start with the tag: (cmd, "args", field, ...).
        if all(len(e["loc"]) >= 2 and e["loc"][1] == "args" for e in errors):
            raise ProtocolError(ErrorCode.INVALID_ARGS, f"invalid arguments for {cmd!r}",
                                errors_jsonable(exc, strip=1), request_id=request_id) from None
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "invalid request", errors_jsonable(exc, strip=1),
                            request_id=request_id) from None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_server_message(raw: str | bytes) -> Any:
    """For clients and tests: a server frame as a message model, or a list of ``EventMessage``."""
    data = json.loads(raw)
    if isinstance(data, list):
        return _EVENT_BATCH.validate_python(data)
    return _SERVER_ADAPTER.validate_python(data)


__all__ = ["MAX_DEPTH", "MAX_MESSAGE_BYTES", "parse_client_message", "parse_server_message"]
