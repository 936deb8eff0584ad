"""The protocol's JSON Schema (``docs/protocol.schema.json``) and the plan file's, from the models.

Both outputs are deterministic (sorted keys, no timestamps) so a CI check can
compare them with the checked-in ``docs/`` files and catch drift. The
Markdown reference is rendered from the same schema by :mod:`.markdown`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from .commands import REQUEST_ADAPTER, REQUEST_MODELS, TOPIC_OF_EVENT, required_role
from .errors import CLOSE_DESCRIPTIONS, ERROR_DESCRIPTIONS, CloseCode, ErrorCode
from .messages import EVENT_DATA_MODELS, SERVER_MESSAGES, Auth
from .parsing import MAX_MESSAGE_BYTES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF_TEMPLATE = "#/$defs/{model}"  # every model is under $defs, referenced by name


def json_schema() -> dict[str, Any]:
    """The whole protocol as one JSON Schema document; every model is under ``$defs``.

    ``ClientMessage`` is what a client may send, ``ServerFrame`` what a server
    frame may hold (one message, or an array of events). ``x-commands``,
    ``x-events``, ``x-error-codes`` and ``x-close-codes`` index the rest.
    """
    inputs: list[tuple[str, Any, TypeAdapter[Any]]] = [
        ("Auth", "validation", TypeAdapter(Auth)),
        ("Request", "validation", REQUEST_ADAPTER),
    ]
    inputs += [(m.__name__, "serialization", TypeAdapter(m)) for m in SERVER_MESSAGES]
    inputs += [(m.__name__, "serialization", TypeAdapter(m)) for m in EVENT_DATA_MODELS.values()]
    keyed, top = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    defs["Request"] = keyed[("Request", "validation")]
    defs["Request"]["description"] = "A command from the client, chosen by `cmd`."
    defs["ClientMessage"] = {
        "description": "Anything a client may send: `auth` first, then requests.",
        "oneOf": [{"$ref": REF_TEMPLATE.format(model="Auth")}, {"$ref": REF_TEMPLATE.format(model="Request")}],
        "discriminator": {"propertyName": "type", "mapping": {
            "auth": REF_TEMPLATE.format(model="Auth"), "request": REF_TEMPLATE.format(model="Request")}},
    }
    server = {m.model_fields["type"].default: REF_TEMPLATE.format(model=m.__name__) for m in SERVER_MESSAGES}
    defs["ServerMessage"] = {
        "description": "One message from the server.",
        "oneOf": [{"$ref": ref} for ref in server.values()],
        "discriminator": {"propertyName": "type", "mapping": server},
    }
    defs["ServerFrame"] = {
        "description": "A frame from the server: one message, or an array of event messages.",
        "oneOf": [{"$ref": REF_TEMPLATE.format(model="ServerMessage")},
                  {"type": "array", "items": {"$ref": REF_TEMPLATE.format(model="EventMessage")}}],
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Liaison WebSocket protocol, version 1",
        "description": "JSON messages over one WebSocket; see docs/protocol.md. Generated from "
                       "liaison.protocol; do not edit.",
        "anyOf": [{"$ref": REF_TEMPLATE.format(model="ClientMessage")}, {"$ref": REF_TEMPLATE.format(model="ServerFrame")}],
        "$defs": defs,
        "x-protocol-version": 1,
        "x-max-message-bytes": MAX_MESSAGE_BYTES,
        "x-commands": {
            cmd: {"role": required_role(cmd), "request": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}
            for cmd, model in REQUEST_MODELS.items()
        },
        "x-events": {
            event: {"topic": TOPIC_OF_EVENT[event].value, "data": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}
            for event, model in EVENT_DATA_MODELS.items()
        },
        "x-error-codes": {code.value: ERROR_DESCRIPTIONS[code] for code in ErrorCode},
        "x-close-codes": {str(code.value): {"name": code.name, "description": CLOSE_DESCRIPTIONS[code]}
                          for code in CloseCode},
    }


def schema_text() -> str:
    """``json_schema()`` as the text written to docs/protocol.schema.json."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def plan_schema_text() -> str:
    """The session plan file's JSON Schema (``docs/plan.schema.json``), deterministic like the protocol's."""
    from .plan_file import plan_json_schema

    return json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n"


__all__ = ["REF_TEMPLATE", "SCHEMA_DIALECT", "json_schema", "plan_schema_text", "schema_text"]
