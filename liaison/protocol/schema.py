"""JSON Schema and Markdown documentation generated from the protocol models.

Both outputs are deterministic (sorted keys, no timestamps) so a CI check can
compare them with the checked-in ``docs/`` files and catch drift.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from .commands import (
    COMMANDS, MAX_VALUE_DEPTH, REQUEST_ADAPTER, REQUEST_MODELS, TOPIC_OF_EVENT, Topic,
    Request, required_role,
)
from .encoding import dumps
from .errors import CLOSE_DESCRIPTIONS, ERROR_DESCRIPTIONS, CloseCode, ErrorCode
from .messages import (
    EVENT_DATA_MODELS, SERVER_MESSAGES, Alert, Auth, ErrorBody, EventMessage, Gap, Goodbye, Hello, Reply, Welcome,
)
from .parsing import MAX_DEPTH, MAX_MESSAGE_BYTES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{model}"

# What each command's ``result`` holds (prose for the docs; results are not validated).
RESULT_NOTES: dict[str, str] = {
    "ping": "`{\"pong\": true, \"time\": <server Unix time>, \"last_seq\": <newest event seq>}`",
    "state": "The session snapshot, as in `welcome.state`.",
    "list_experiments": "A list of experiment descriptions (key, path, kind, exp_info defaults).",
    "add_experiment": "The new experiment's description.",
    "rescan": "`{\"added\": [<experiment description>, ...], \"experiments\": <how many are known now>}`",
    "run": "`{\"run_id\": ..., \"key\": ...}` as soon as the run is queued; its events follow.",
    "pause": "Seconds between the request and the experiment observing it.",
    "resume": "Seconds between the request and the experiment observing it.",
    "stop": "Seconds between the request and the experiment observing it.",
    "abort": "What happened: whether the run stopped by itself or the worker was killed.",
    "get_exp_info": "The experiment info object.",
    "set_exp_info": "The experiment info after the change.",
    "add_data": "`true`",
    "annotate": "`true`",
    "trials": "`{\"current\": <trial or null>, \"future\": [<trial>, ...]}`",
    "skip_trials": "The trial that is now current (or null).",
    "rewind_trials": "The trial that is now current (or null).",
    "setup_window": "The window's parameters after the change.",
    "subscribe": "`{\"topics\": [...]}`: the topics now subscribed.",
    "unsubscribe": "`{\"topics\": [...]}`: the topics now subscribed.",
    "replay": ("`{\"events\": [<event message>, ...], \"more\": <bool>, "
               "\"gap\": {\"from_seq\", \"to_seq\"}}` "
               "(`gap` only when events are missing; `more` when the reply was cut at 10000 events)."),
    "list_runs": "A list of run records, newest first.",
    "get_run": "The run record (`not_found` when unknown).",
    "list_devices": "A list of `{name, device_class, params | experiment, ready, class, error}`.",
    "list_available_devices": "Device class to a list of parameter sets, one per device found.",
    "add_device": "The new device's description (`device_error` with the device's message if it fails).",
    "remove_device": "`true`",
    "setup_devices": "The names of the devices the experiment's `setupDevices` created.",
    "plan_start": "The plan's state, as `plan_state` gives it; `plan_changed` events follow.",
    "plan_pause": "The plan's state (`pausing` until the run in progress ends, then `paused`).",
    "plan_continue": "The plan's state.",
    "plan_skip": "The plan's state.",
    "plan_cancel": "The plan's state.",
    "plan_state": ("`{\"plan_id\", \"name\", \"status\", \"cursor\", \"steps\": [<step>, ...], \"participants\": "
                   "{<id>: {\"runs\", \"done\"}}, \"completed_runs\", \"message\", ...}`; each step has "
                   "`kind` (run or break), `status`, and for runs `participant`, `key`, `exp_info`, `cell` "
                   "(counterbalancing) and `attempts` (run ids and outcomes). `{\"status\": \"none\"}` "
                   "before any plan."),
}

# Arguments for each command's example request (validated when the docs are generated).
EXAMPLE_ARGS: dict[str, dict[str, Any]] = {
    "add_experiment": {"path": "stroop_lite/stroop_lite.psyexp"},
    "run": {"key": "stroop_lite", "exp_info": {"participant": "p01", "session": "001"}, "seed": 42},
    "plan_start": {"toml": "name = \"day 1\"\nparticipants = [\"P01\", \"P02\"]\n"
                           "[counterbalance]\nmethod = \"latin_square\"\n"
                           "[[experiments]]\nkey = \"stroop_lite\"\n[[experiments]]\nkey = \"rt_demo\"\n",
                   "simulate": {"p_correct": 0.9, "rt_mean": 0.5, "rt_sd": 0.1}},
    "abort": {"grace": 2.0},
    "set_exp_info": {"values": {"participant": "p02"}},
    "add_data": {"name": "rating", "value": {"score": 4, "tags": ["calm"]}},
    "annotate": {"text": "participant asked a question"},
    "trials": {"n": 3},
    "skip_trials": {"n": 2},
    "rewind_trials": {"n": 1},
    "setup_window": {"size": [1024, 768], "fullscr": False, "color": "black", "units": "height"},
    "subscribe": {"topics": ["runs", "data"]},
    "unsubscribe": {"topics": ["data"]},
    "replay": {"since": 120},
    "list_runs": {"limit": 10},
    "get_run": {"run_id": "20250101T120000-stroop_lite-a1b2c3"},
    "list_available_devices": {"device_class": "keyboard"},
    "add_device": {"name": "buttonBox", "device_class": "psychopy.hardware.button.KeyboardButtonBox",
                   "params": {"buttons": ["a", "s", "d", "f"]}},
    "remove_device": {"name": "buttonBox"},
    "setup_devices": {"key": "stroop_lite"},
}


def example_messages() -> dict[str, str]:
    """One valid example of every message type (two for replies), as compact JSON via the models."""
    examples = [
        Hello(server="liaison 0.1.0", session_id="5f2c9a", auth="token", max_message_bytes=MAX_MESSAGE_BYTES),
        Auth(token="s3cret-token", role="controller", since=None, client="lab-laptop"),
        Welcome(role="controller", client_id="a1b2c3d4", state={"status": "idle", "run_id": None},
                last_seq=128, replay="none"),
        REQUEST_MODELS["run"].model_validate({"id": 1, "args": EXAMPLE_ARGS["run"]}),
        Reply(id=1, ok=True, result={"run_id": "20250101T120000-stroop_lite-a1b2c3", "key": "stroop_lite"}),
        Reply(id=2, ok=False, error=ErrorBody(code=ErrorCode.CONFLICT, message="nothing is running")),
        EventMessage(seq=129, event="run_paused", time=1735732800.25,
                     data={"run_id": "20250101T120000-stroop_lite-a1b2c3", "key": "stroop_lite",
                           "latency": 0.012}),
        Gap(from_seq=1, to_seq=99, reason="these events are no longer stored"),
        Goodbye(code=int(CloseCode.SLOW_CONSUMER), reason="client too slow: more than 50000 events queued"),
        Alert(code="storage_failed", message="the server cannot write its journal",
              details={"error": "OperationalError: database or disk is full", "first_undelivered_seq": 4711}),
    ]
    texts = {message.type: dumps(message) for message in examples if message.type != "reply"}
    texts["reply"] = dumps(examples[4])
    texts["reply_error"] = dumps(examples[5])
    return texts


def example_request(cmd: str) -> str:
    """The JSON text of a request for ``cmd`` with its documented example arguments (``id`` 1).

    Raises KeyError for a command that does not exist.
    """
    model = REQUEST_MODELS[cmd].model_validate({"id": 1, "args": EXAMPLE_ARGS.get(cmd, {})})
    return dumps(model)


# --- JSON Schema ------------------------------------------------------------------------------


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
    keyed, top = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    defs["Request"] = keyed[("Request", "validation")]
    defs["Request"]["description"] = "A command from the client, chosen by `cmd`."
    defs["ClientMessage"] = {
        "description": "Anything a client may send: `auth` first, then requests.",
        "oneOf": [{"$ref": _REF.format(model="Auth")}, {"$ref": _REF.format(model="Request")}],
        "discriminator": {"propertyName": "type", "mapping": {
            "auth": _REF.format(model="Auth"), "request": _REF.format(model="Request")}},
    }
    server = {m.model_fields["type"].default: _REF.format(model=m.__name__) for m in SERVER_MESSAGES}
    defs["ServerMessage"] = {
        "description": "One message from the server.",
        "oneOf": [{"$ref": ref} for ref in server.values()],
        "discriminator": {"propertyName": "type", "mapping": server},
    }
    defs["ServerFrame"] = {
        "description": "A frame from the server: one message, or an array of event messages.",
        "oneOf": [{"$ref": _REF.format(model="ServerMessage")},
                  {"type": "array", "items": {"$ref": _REF.format(model="EventMessage")}}],
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Liaison WebSocket protocol, version 1",
        "description": "JSON messages over one WebSocket; see docs/protocol.md. Generated from "
                       "liaison.protocol; do not edit.",
        "anyOf": [{"$ref": _REF.format(model="ClientMessage")}, {"$ref": _REF.format(model="ServerFrame")}],
        "$defs": defs,
        "x-protocol-version": 1,
        "x-max-message-bytes": MAX_MESSAGE_BYTES,
        "x-commands": {
            cmd: {"role": required_role(cmd), "request": {"$ref": _REF.format(model=model.__name__)}}
            for cmd, model in REQUEST_MODELS.items()
        },
        "x-events": {
            event: {"topic": TOPIC_OF_EVENT[event].value, "data": {"$ref": _REF.format(model=model.__name__)}}
            for event, model in EVENT_DATA_MODELS.items()
        },
        "x-error-codes": {code.value: ERROR_DESCRIPTIONS[code] for code in ErrorCode},
        "x-close-codes": {str(code.value): {"name": code.name, "description": CLOSE_DESCRIPTIONS[code]}
                          for code in CloseCode},
    }


def schema_text() -> str:
    """``json_schema()`` as the text written to docs/protocol.schema.json."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- Markdown ----------------------------------------------------------------------------------


def plan_schema_text() -> str:
    """The session plan file's JSON Schema (``docs/plan.schema.json``), deterministic like the protocol's."""
    from .plan_file import plan_json_schema

    return json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n"


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


def _fields_table(model_schema: dict[str, Any], defs: dict[str, Any],
                  skip: tuple[str, ...] = ()) -> list[str]:
    properties = model_schema.get("properties", {})
    if not [name for name in properties if name not in skip]:
        return ["No fields."]
    required = set(model_schema.get("required", []))
    lines = ["| Field | Type | Required | Default | Description |", "|---|---|---|---|---|"]
    for name, prop in properties.items():
        if name in skip:
            continue
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        lines.append(f"| `{name}` | {render_type(prop, defs)} | {'yes' if name in required else 'no'} | "
                     f"{default} | {_cell(prop.get('description', ''))} |")
    return lines


def _description(schema: dict[str, Any]) -> str:
    return schema.get("description", "").strip()


def markdown_doc() -> str:
    """The protocol reference, generated from the models (written to docs/protocol.md)."""
    schema = json_schema()
    defs = schema["$defs"]
    examples = example_messages()
    out: list[str] = []
    add = out.append

    add("# Liaison WebSocket protocol (version 1)")
    add("")
    add("<!-- Generated by scripts/gen_protocol_doc.py from liaison/protocol; do not edit. -->")
    add("")
    add("A client controls (or watches) a Liaison session over one WebSocket. Every frame is a "
        "UTF-8 JSON text; binary frames are accepted when they hold UTF-8 JSON, and are read exactly "
        "like text frames. The machine-readable form of this document is "
        "[`protocol.schema.json`](protocol.schema.json) (JSON Schema 2020-12).")
    add("")
    add("## Envelope")
    add("")
    add("Every message is a JSON object with `\"v\": 1` (the protocol version, an integer) and a "
        "`\"type\"`. Clients send `auth` and `request`; servers send `hello`, `welcome`, `reply`, "
        "`event`, `gap` and `goodbye`. To save frames, the server may send several event messages "
        "as one JSON array.")
    add("")
    add(f"- A frame larger than `max_message_bytes` (from `hello`, default {MAX_MESSAGE_BYTES} bytes) "
        "is rejected with `too_large` without being parsed.")
    add(f"- Messages may nest arrays and objects at most {MAX_DEPTH} levels deep; `NaN`, `Infinity` "
        "and numbers out of the double range are not JSON and are rejected with `invalid_json`.")
    add("- Unknown fields are errors, everywhere: in the envelope (`invalid_message`) and in `args` "
        "(`invalid_args`). Types are strict: `\"2\"` is not an integer, `1` is not a boolean.")
    add("- A bad message gets an error reply and the connection stays open. The reply echoes the "
        "request's `id` when it could be read, otherwise `id` is `null`.")
    add("")
    add("## Handshake")
    add("")
    add("```text")
    add("client                                   server")
    add("  | ---- WebSocket open --------------------> |")
    add("  | <--- hello ------------------------------ |  server name, session_id, auth method, size limit")
    add("  | ---- auth -------------------------------> |  token, role, since")
    add("  | <--- welcome ---------------------------- |  role, state snapshot, last_seq, replay kind")
    add("  | <--- gap (only when replay is \"gap\") ---- |")
    add("  | <--- events: replayed (seq > since), then live")
    add("  | ---- request {id, cmd, args} -----------> |")
    add("  | <--- reply {id, ok, result | error} ----- |  replies and events interleave")
    add("```")
    add("")
    add("If the first message is not a valid `auth`, the server answers with an error reply and "
        f"closes with {CloseCode.PROTOCOL_VIOLATION.value} (`unauthorized` with the request's id when "
        "a request came first). A wrong or missing token gets an `unauthorized` reply and close "
        f"{CloseCode.AUTH_FAILED.value}. No `auth` in time: close {CloseCode.AUTH_TIMEOUT.value}. "
        "Before closing on purpose, the server sends `goodbye` with the close code and reason.")
    add("")
    add("## Messages")
    add("")
    order = [("hello", "Hello", "server → client"), ("auth", "Auth", "client → server"),
             ("welcome", "Welcome", "server → client"), ("request", None, "client → server"),
             ("reply", "Reply", "server → client"), ("event", "EventMessage", "server → client"),
             ("gap", "Gap", "server → client"), ("goodbye", "Goodbye", "server → client"),
             ("alert", "Alert", "server → client")]
    for kind, name, direction in order:
        add(f"### `{kind}` ({direction})")
        add("")
        if name is None:
            base = Request.model_json_schema(ref_template=_REF)
            base["properties"]["cmd"] = {"type": "string", "description": "The command's name."}
            base["properties"]["args"] = {"type": "object", "default": {},
                                          "description": "The command's arguments; `{}` when omitted."}
            add("A command. The server answers every request with exactly one `reply` carrying the "
                "same `id`; replies may come in a different order than the requests when commands "
                "take different times. See [Commands](#commands) for each `cmd` and its `args`.")
            add("")
            out.extend(_fields_table(base, defs))
            add("")
            add("Example:")
            add("")
            add("```json")
            add(examples["request"])
            add("```")
            add("")
            continue
        add(_description(defs[name]))
        add("")
        out.extend(_fields_table(defs[name], defs))
        add("")
        add("Example:")
        add("")
        add("```json")
        add(examples[kind])
        if kind == "reply":
            add(examples["reply_error"])
            add(examples_error_reply())
        add("```")
        add("")
    add("`ErrorBody`: " + _description(defs["ErrorBody"]))
    add("")
    out.extend(_fields_table(defs["ErrorBody"], defs))
    add("")

    add("## Commands")
    add("")
    add("Observers may use only the commands marked *observer*; controllers may use all. An "
        "observer sending a controller command gets `forbidden`.")
    add("")
    add("| Command | Role | Summary |")
    add("|---|---|---|")
    for cmd, model in REQUEST_MODELS.items():
        summary = _description(defs[model.__name__]).split("\n")[0]
        add(f"| [`{cmd}`](#{cmd}) | {required_role(cmd)} | {_cell(summary)} |")
    add("")
    for cmd, args_model in COMMANDS.items():
        args_schema = defs[args_model.__name__]
        add(f"### {cmd}")
        add("")
        role = required_role(cmd)
        add(f"Role: **{role}**" + (" (controllers too)." if role == "observer" else " only."))
        add("")
        add(_description(args_schema))
        add("")
        out.extend(_fields_table(args_schema, defs))
        add("")
        add(f"Result: {RESULT_NOTES.get(cmd, 'command-specific JSON.')}")
        add("")
        add("```json")
        add(example_request(cmd))
        add("```")
        add("")

    add("## Errors")
    add("")
    add("A failed request gets `{\"type\": \"reply\", \"ok\": false, \"error\": {\"code\", \"message\", "
        "\"details\"}}`. Codes are stable; messages are for people. For `invalid_args` (and "
        "`invalid_message` when fields are wrong) `details` is a list of problems, each with `loc` "
        "(the path to the field, from `args` for `invalid_args`), `type`, `msg` and the offending `input`.")
    add("")
    add("| Code | Meaning |")
    add("|---|---|")
    for code in ErrorCode:
        add(f"| `{code.value}` | {_cell(ERROR_DESCRIPTIONS[code])} |")
    add("")
    add("## Close codes")
    add("")
    add("| Code | Name | Meaning |")
    add("|---|---|---|")
    for close in CloseCode:
        add(f"| {close.value} | `{close.name}` | {_cell(CLOSE_DESCRIPTIONS[close])} |")
    add("")

    add("## Events")
    add("")
    add("Each event is an `event` message; `event` names its type and `data` holds the fields "
        "below. Every field is always present (`null` when it has no value). Clients receive the "
        "events of the topics they subscribed to; a new connection is subscribed to `all`.")
    add("")
    add("| Topic | Events |")
    add("|---|---|")
    for topic in Topic:
        events = sorted(e for e, t in TOPIC_OF_EVENT.items() if t is topic)
        listed = ", ".join(f"[`{e}`](#{e})" for e in events) if events else "every event"
        add(f"| `{topic.value}` | {listed} |")
    add("")
    for event, model in EVENT_DATA_MODELS.items():
        add(f"### {event}")
        add("")
        add(f"Topic: `{TOPIC_OF_EVENT[event].value}`. {_description(defs[model.__name__])}")
        add("")
        out.extend(_fields_table(defs[model.__name__], defs))
        add("")

    add("## Replay and gaps")
    add("")
    add("Events carry `seq`, strictly increasing within a server session (`hello.session_id`, one per "
        "data folder: numbering continues across server restarts). The server keeps recent events in "
        "memory and every event in its journal, so a client can reconnect without losing any:")
    add("")
    add("1. Remember the `seq` of the last event you processed.")
    add("2. After a disconnect, reconnect and send it as `auth.since`. The server replays every "
        "event with `seq > since` (of your subscribed topics), at the pace you read them, then "
        "continues live; `welcome.replay` is `\"full\"`.")
    add("3. If some of those events are no longer stored, `welcome.replay` is `\"gap\"` and a "
        "`gap` message names the missing range `from_seq..to_seq` (inclusive); what is still "
        "stored follows. Re-read state with `state` to resynchronise.")
    add("4. Ignore any event whose `seq` is not greater than the last one you processed: a replay "
        "may overlap what you already have.")
    add("5. If `hello.session_id` differs from the one you last saw, you reached a server with "
        "another data folder and its own numbering; connect without `since` and read the state "
        "from `welcome`.")
    add("")
    add("`since: null` (the default) means live events only (`welcome.replay` is `\"none\"`). The "
        "`replay` command returns stored events in its reply (up to 10,000; `more` says if others "
        "follow) instead of re-sending them. A client "
        "that does not read its events fast enough is disconnected with close code "
        f"{CloseCode.SLOW_CONSUMER.value} after a `goodbye`; it can reconnect with `since`.")
    add("")
    add(f"`add_data` values may nest at most {MAX_VALUE_DEPTH} levels; `exp_info` values are JSON "
        "scalars or lists of scalars.")
    add("")
    return "\n".join(out)


def examples_error_reply() -> str:
    """The JSON text of a typical error reply (``invalid_args`` with validation details), for the docs."""
    reply = Reply(id=7, ok=False, error=ErrorBody(
        code=ErrorCode.INVALID_ARGS, message="invalid arguments for 'skip_trials'",
        details=[{"type": "int_type", "loc": ["args", "n"], "msg": "Input should be a valid integer",
                  "input": "two"}]))
    return dumps(reply)


__all__ = ["EXAMPLE_ARGS", "RESULT_NOTES", "example_messages", "example_request", "json_schema",
           "markdown_doc", "render_type", "schema_text"]
