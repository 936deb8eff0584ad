"""Models out, text on the wire: every server message and event is encoded here.

``dumps`` never fails (values pydantic cannot write go through
``to_jsonable``); ``event_json`` is the fan-out's hot path and writes the
event envelope with ``pydantic_core.to_json`` directly; ``reply_text``
splices an already-encoded :class:`RawResult` into a reply unparsed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json

from session.events import Event

from .errors import ProtocolError
from .jsonable import to_jsonable
from .messages import ErrorBody, EventMessage, Reply


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


__all__ = ["RawResult", "dumps", "event_json", "event_message", "reply_error", "reply_ok", "reply_text"]
