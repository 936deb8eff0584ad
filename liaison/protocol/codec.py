"""Bytes in, models out (and back): the only place raw client input is parsed.

``parse_client_message`` turns anything a client can send into a validated
``Auth`` or ``Request``, or raises ``ProtocolError`` with the code the client
should see; it never raises anything else. Frames may be text or binary; a
binary frame is accepted when it is UTF-8 JSON, exactly like a text frame.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from session.events import Event

from .commands import COMMANDS, REQUEST_ADAPTER, Request
from .errors import ErrorCode, ProtocolError
from .messages import Auth, ErrorBody, EventMessage, Reply, RequestId, ServerMessage

MAX_MESSAGE_BYTES = 1 << 20
MAX_DEPTH = 32  # nesting of arrays/objects in a client message, the envelope included
_JSONABLE_DEPTH = 64  # deeper structures (or cycles) in event payloads become strings

_REQUEST_ID = TypeAdapter(RequestId)
_SERVER_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerMessage)
_EVENT_BATCH = TypeAdapter(list[EventMessage])


# --- client messages ------------------------------------------------------------------------


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


def errors_jsonable(error: ValidationError, strip: int = 0) -> list[dict[str, Any]]:
    """pydantic's error list made JSON-safe (``ctx`` may hold exceptions).

    ``loc`` loses its first ``strip`` parts (the union tag); ``input`` is clipped
    so a huge bad value is not echoed back in full.
    """
    result = []
    for item in error.errors(include_url=False):
        entry = {key: to_jsonable(value) for key, value in item.items() if key not in ("loc", "input")}
        entry["loc"] = [to_jsonable(part) for part in item["loc"][strip:]]
        if "input" in item:
            entry["input"] = _clip(to_jsonable(item["input"]))
        result.append(entry)
    return result


def _clip(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, (list, dict)):
        if depth >= 3 or len(value) > 20:
            return f"<{'array' if isinstance(value, list) else 'object'} of {len(value)} items>"
        if isinstance(value, list):
            return [_clip(item, depth + 1) for item in value]
        return {_clip(str(key)): _clip(item, depth + 1) for key, item in value.items()}
    return value


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


# --- server messages ------------------------------------------------------------------------


def dumps(model: BaseModel) -> str:
    """Compact JSON for a message; never fails on odd values.

    Values pydantic cannot serialise go through ``to_jsonable``; if serialising
    still fails (e.g. a lone surrogate in a string), the whole message is made
    JSON-safe first.
    """
    try:
        return model.model_dump_json(fallback=to_jsonable)
    except PydanticSerializationError:
        safe = to_jsonable(model.model_dump(mode="python"))
        return json.dumps(safe, ensure_ascii=False, separators=(",", ":"))


def parse_server_message(raw: str | bytes) -> Any:
    """For clients and tests: a server frame as a message model, or a list of ``EventMessage``."""
    data = json.loads(raw)
    if isinstance(data, list):
        return _EVENT_BATCH.validate_python(data)
    return _SERVER_ADAPTER.validate_python(data)


def reply_ok(request_id: str | int | None, result: Any = None) -> Reply:
    """A successful reply; ``result`` is made JSON-safe."""
    return Reply(id=request_id, ok=True, result=to_jsonable(result))


class RawResult:
    """A result that is already JSON text (e.g. a page of stored events): sent as it is, never re-parsed."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def reply_text(request_id: str | int | None, result: Any) -> str:
    """The wire text of a successful reply; a :class:`RawResult` is spliced in without parsing it."""
    if isinstance(result, RawResult):
        return ('{"v":1,"type":"reply","id":' + json.dumps(request_id) + ',"ok":true,"result":' + result.text
                + ',"error":null}')
    return dumps(reply_ok(request_id, result))


def reply_error(error: ProtocolError) -> Reply:
    """The reply telling a client about ``error`` (its id, code, message and details)."""
    return Reply(id=error.request_id, ok=False, error=ErrorBody(
        code=error.code, message=error.message, details=to_jsonable(error.details)))


def event_message(event: Event) -> EventMessage:
    """The wire form of a session event: its dataclass fields minus seq/time go in ``data``."""
    data = {f.name: getattr(event, f.name) for f in _payload_fields(type(event))}
    return EventMessage.model_construct(
        v=1, type="event", seq=event.seq, event=event.type, time=float(event.time), data=to_jsonable(data))


def event_json(event: Event) -> str:
    """The event's wire JSON, serialised once for every subscriber and the journal.

    The hot path of the fan-out: ``pydantic_core.to_json`` writes the
    envelope directly (same fields, same order as :class:`EventMessage`, NaN
    and infinities as null like :func:`to_jsonable`; ``scripts/bench_codec.py``
    measures it against the standard library's encoder); anything it cannot
    write (text that is not valid UTF-8, odd objects) goes through the model
    and ``to_jsonable`` instead.
    """
    payload = {"v": 1, "type": "event", "seq": event.seq, "event": event.type, "time": float(event.time),
               "data": {f.name: getattr(event, f.name) for f in _payload_fields(type(event))}}
    try:
        return to_json(payload, inf_nan_mode="null", fallback=_fallback).decode("utf-8")
    except (PydanticSerializationError, ValueError, RecursionError):
        return dumps(event_message(event))


def _fallback(value: Any) -> Any:
    converted = to_jsonable(value)
    if converted is value:  # to_jsonable keeps str subclasses etc. as they are: say it as text
        return str(value)
    return converted


_FIELDS_CACHE: dict[type, tuple[dataclasses.Field, ...]] = {}


def _payload_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    fields = _FIELDS_CACHE.get(cls)
    if fields is None:
        fields = tuple(f for f in dataclasses.fields(cls) if f.name not in ("seq", "time"))
        _FIELDS_CACHE[cls] = fields
    return fields


# --- JSON-safe values -------------------------------------------------------------------------

_PLAIN = (str, int, bool, type(None))


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON types, never failing.

    numpy scalars and arrays become Python numbers and lists (numpy itself is
    never imported here), NaN and infinities become null, tuples and sets
    lists, dict keys strings, bytes base64 text, dates ISO 8601 strings, enums
    their values, dataclasses and pydantic models dicts; anything else its
    ``str()``.
    """
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _valid_text(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if _depth >= _JSONABLE_DEPTH:
        return _as_str(value)
    depth = _depth + 1
    if kind is dict:
        return {_key(k): to_jsonable(v, depth) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_jsonable(v, depth) for v in value]
    if kind.__module__ == "numpy":
        try:
            converted = value.tolist() if hasattr(value, "shape") and value.shape != () else value.item()
        except Exception:  # noqa: BLE001
            return _as_str(value)
        if type(converted) is kind:  # e.g. object arrays of themselves
            return _as_str(value)
        return to_jsonable(converted, depth)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return to_jsonable(float(value), depth)
    if isinstance(value, str):
        return to_jsonable(str(value), depth)
    if isinstance(value, dict):
        return {_key(k): to_jsonable(v, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, depth) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, depth) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(), depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), depth) for f in dataclasses.fields(value)}
    return _as_str(value)


def _valid_text(text: str) -> str:
    """``text`` without lone surrogates, which UTF-8 (and so a WebSocket text frame) cannot carry."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _key(key: Any) -> str:
    if type(key) is str:
        return key if key.isascii() else _valid_text(key)
    converted = to_jsonable(key, _JSONABLE_DEPTH - 1)
    if isinstance(converted, str):
        return converted
    try:
        return json.dumps(converted)  # None -> "null", True -> "true", 1.5 -> "1.5", as json.dumps does
    except ValueError:  # an int too long to print
        return _as_str(key)


def _as_str(value: Any) -> str:
    try:
        return _valid_text(str(value))
    except Exception:  # noqa: BLE001
        try:
            return repr(value)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(value).__name__}>"


__all__ = [
    "MAX_DEPTH", "MAX_MESSAGE_BYTES", "dumps", "errors_jsonable", "event_json",
    "event_message", "parse_client_message", "parse_server_message", "reply_error", "reply_ok",
    "to_jsonable",
]
