"""``docs/protocol.md``: the prose of ``protocol.template.md`` with tables rendered from the models.

The template holds every sentence that is not about one model; the models
hold the rest (docstrings, ``Field`` descriptions, each command's
``result_doc`` and ``example_args``). This module only renders: field
tables, command and event sections, code tables, and fills the template's
``$placeholders``.
"""

from __future__ import annotations

import json
import string
from importlib import resources
from typing import Any

from .commands import COMMANDS, MAX_VALUE_DEPTH, REQUEST_MODELS, TOPIC_OF_EVENT, Request, Topic, required_role
from .errors import CLOSE_DESCRIPTIONS, ERROR_DESCRIPTIONS, CloseCode, ErrorCode
from .examples import example_error_reply, example_messages, example_request
from .messages import EVENT_DATA_MODELS, SERVER_MESSAGES
from .parsing import MAX_DEPTH, MAX_MESSAGE_BYTES
from .schema import REF_TEMPLATE, json_schema

TEMPLATE = "protocol.template.md"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _range(low: Any, high: Any, low_open: bool = False, high_open: bool = False) -> str:
    if low is None and high is None:
        return ""
    if low is not None and high is not None:
        return f" {'>' if low_open else ''}{low}..{'<' if high_open else ''}{high}"
    if low is not None:
        return f" {'>' if low_open else '≥'} {low}"
    return f" {'<' if high_open else '≤'} {high}"


_SCALARS = {"boolean", "integer", "number", "string", "null"}


def render_type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short human-readable type for a JSON Schema fragment, e.g. ``integer 1..10000 | null``."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        target = defs.get(name, {})
        if name == "JsonValue" or target == {}:
            return "any JSON"
        if "enum" in target:
            return " \\| ".join(json.dumps(v) for v in target["enum"])
        return f"`{name}`"
    if schema.get("minimum") == -(2**63) and schema.get("maximum") == 2**63 - 1:
        return "integer (signed 64-bit)"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kinds = {part.get("type") for part in schema[key]}
            if {"boolean", "integer", "number", "string"} <= kinds and kinds <= _SCALARS:
                strings = [part for part in schema[key] if part.get("type") == "string"]
                limit = render_type(strings[0], defs)[len("string"):]
                limit = limit.replace("(", "").replace(")", "")
                return "JSON scalar" + (f" (strings{limit})" if limit else "")
            parts = [render_type(part, defs) for part in schema[key]]
            return " \\| ".join(dict.fromkeys(parts))
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return "string" + _length(schema.get("minLength"), schema.get("maxLength"), "chars")
    if kind in ("integer", "number"):
        low, low_open = schema.get("minimum"), False
        high, high_open = schema.get("maximum"), False
        if "exclusiveMinimum" in schema:
            low, low_open = schema["exclusiveMinimum"], True
        if "exclusiveMaximum" in schema:
            high, high_open = schema["exclusiveMaximum"], True
        return kind + _range(low, high, low_open, high_open)
    if kind in ("boolean", "null"):
        return kind
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(render_type(item, defs) for item in schema["prefixItems"]) + "]"
        items = render_type(schema.get("items", {}), defs)
        return f"array of ({items})" + _length(schema.get("minItems"), schema.get("maxItems"), "items")
    if kind == "object":
        values = schema.get("additionalProperties")
        inner = f" of string → ({render_type(values, defs)})" if isinstance(values, dict) else ""
        return "object" + inner + _length(schema.get("minProperties"), schema.get("maxProperties"), "entries")
    return "any JSON"


def _length(low: Any, high: Any, unit: str) -> str:
    if low is None and high is None:
        return ""
    if low is not None and high is not None:
        return f" ({low}..{high} {unit})"
    return f" (≥ {low} {unit})" if low is not None else f" (≤ {high} {unit})"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _fields_table(model_schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    properties = model_schema.get("properties", {})
    if not properties:
        return ["No fields."]
    required = set(model_schema.get("required", []))
    lines = ["| Field | Type | Required | Default | Description |", "|---|---|---|---|---|"]
    for name, prop in properties.items():
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        lines.append(f"| `{name}` | {render_type(prop, defs)} | {'yes' if name in required else 'no'} | "
                     f"{default} | {_cell(prop.get('description', ''))} |")
    return lines


def _description(schema: dict[str, Any]) -> str:
    return schema.get("description", "").strip()


def _block(lines: list[str]) -> str:
    """Lines (the last one blank) as one template value ending in a newline: the template's next
    heading then follows a blank line."""
    text = "\n".join(lines)
    return text if text.endswith("\n") else text + "\n"


def _example(*texts: str) -> list[str]:
    return ["Example:", "", "```json", *texts, "```", ""]


def _message_sections(defs: dict[str, Any]) -> dict[str, str]:
    """``message_<type>``: each message's description, fields and example (the template adds headings)."""
    examples = example_messages()
    models = {"auth": "Auth", **{m.model_fields["type"].default: m.__name__ for m in SERVER_MESSAGES}}
    sections = {}
    for kind, name in models.items():
        texts = [examples[kind]]
        if kind == "reply":
            texts += [examples["reply_error"], example_error_reply()]
        sections[f"message_{kind}"] = _block(
            [_description(defs[name]), "", *_fields_table(defs[name], defs), "", *_example(*texts)])
    # A request's own fields; its description is the template's, its cmd and args are per command.
    base = Request.model_json_schema(ref_template=REF_TEMPLATE)
    base["properties"]["cmd"] = {"type": "string", "description": "The command's name."}
    base["properties"]["args"] = {"type": "object", "default": {},
                                  "description": "The command's arguments; `{}` when omitted."}
    sections["message_request"] = _block([*_fields_table(base, defs), "", *_example(examples["request"])])
    return sections


def _command_sections(defs: dict[str, Any]) -> dict[str, str]:
    """``command_index`` (one row per command) and ``commands`` (one section each)."""
    index = ["| Command | Role | Summary |", "|---|---|---|"]
    for cmd, model in REQUEST_MODELS.items():
        summary = _description(defs[model.__name__]).split("\n")[0]
        index.append(f"| [`{cmd}`](#{cmd}) | {required_role(cmd)} | {_cell(summary)} |")
    sections: list[str] = []
    for cmd, args_model in COMMANDS.items():
        args_schema = defs[args_model.__name__]
        role = required_role(cmd)
        sections += [f"### {cmd}", "",
                     f"Role: **{role}**" + (" (controllers too)." if role == "observer" else " only."), "",
                     _description(args_schema), "", *_fields_table(args_schema, defs), "",
                     f"Result: {args_model.result_doc}", "",
                     "```json", example_request(cmd), "```", ""]
    return {"command_index": "\n".join(index), "commands": _block(sections)}


def _event_sections(defs: dict[str, Any]) -> dict[str, str]:
    """``topics`` (which events each topic carries) and ``events`` (one section each)."""
    topics = ["| Topic | Events |", "|---|---|"]
    for topic in Topic:
        events = sorted(e for e, t in TOPIC_OF_EVENT.items() if t is topic)
        listed = ", ".join(f"[`{e}`](#{e})" for e in events) if events else "every event"
        topics.append(f"| `{topic.value}` | {listed} |")
    sections: list[str] = []
    for event, model in EVENT_DATA_MODELS.items():
        sections += [f"### {event}", "",
                     f"Topic: `{TOPIC_OF_EVENT[event].value}`. {_description(defs[model.__name__])}", "",
                     *_fields_table(defs[model.__name__], defs), ""]
    return {"topics": "\n".join(topics), "events": _block(sections)}


def _code_tables() -> dict[str, str]:
    errors = ["| Code | Meaning |", "|---|---|"]
    errors += [f"| `{code.value}` | {_cell(ERROR_DESCRIPTIONS[code])} |" for code in ErrorCode]
    closes = ["| Code | Name | Meaning |", "|---|---|---|"]
    closes += [f"| {close.value} | `{close.name}` | {_cell(CLOSE_DESCRIPTIONS[close])} |" for close in CloseCode]
    return {"error_codes": "\n".join(errors), "close_codes": "\n".join(closes)}


def markdown_doc() -> str:
    """The protocol reference (written to docs/protocol.md): the template filled from the models.

    Deterministic. Raises KeyError when the template names a value that is not
    rendered, ValueError when a rendered section has no place in the template
    (e.g. a new message type), so the document can never silently omit part
    of the protocol.
    """
    defs = json_schema()["$defs"]
    values: dict[str, Any] = {
        "max_message_bytes": MAX_MESSAGE_BYTES, "max_depth": MAX_DEPTH, "max_value_depth": MAX_VALUE_DEPTH,
        **{f"close_{code.name.lower()}": code.value for code in CloseCode},
        **_message_sections(defs),
        "error_body": "\n".join([_description(defs["ErrorBody"]), "", *_fields_table(defs["ErrorBody"], defs)]),
        **_command_sections(defs), **_event_sections(defs), **_code_tables(),
    }
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    unplaced = sorted(name for name in values
                      if name.startswith(("message_", "command", "events")) and f"${name}" not in template)
    if unplaced:
        raise ValueError(f"{TEMPLATE} has no place for {', '.join(unplaced)}")
    return string.Template(template).substitute(values)


__all__ = ["markdown_doc", "render_type"]
