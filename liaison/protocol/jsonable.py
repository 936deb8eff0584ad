"""Any Python value as plain JSON types, never failing: what the server sends must always encode.

Event payloads come from experiments (numpy scalars, dates, sets, odd
objects); error details come from pydantic (exceptions in ``ctx``). Both
pass through here before they meet an encoder, so no value a user script
produces can make the server fail to answer.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
from typing import Any

from pydantic import BaseModel, ValidationError

_JSONABLE_DEPTH = 64  # deeper structures (or cycles) in event payloads become strings

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


__all__ = ["errors_jsonable", "to_jsonable"]
