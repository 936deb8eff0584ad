"""Property tests: whatever a client sends, the parser answers with a model or a ProtocolError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from liaison.protocol import (
    COMMANDS, REQUEST_MODELS, Auth, ErrorCode, ProtocolError, Request, Topic, dumps, parse_client_message,
    reply_error,
)
from liaison.protocol.schema import json_schema

# The budget is the profile's (tests/unit/conftest.py): 100 examples, 300 with HYPOTHESIS_PROFILE=thorough
# as CI runs it; tests whose examples cost more (whole valid requests) get half.
FUZZ = settings(settings.default)
FEW = settings(settings.default, max_examples=settings.default.max_examples // 2)


def parse_or_error(raw: Any) -> Auth | Request | ProtocolError:
    """Parse; any exception other than ProtocolError fails the test. Errors must serialise."""
    try:
        return parse_client_message(raw)
    except ProtocolError as error:
        assert error.code is not ErrorCode.INTERNAL, error  # internal would be a parser bug
        json.loads(dumps(reply_error(error)))  # the error reply can always be sent
        return error


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text())
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
request_ids = st.integers(-(2**63), 2**63 - 1) | st.text(max_size=64)
names = st.text(min_size=1, max_size=40)
json_scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
topics = st.lists(st.sampled_from([t.value for t in Topic]), min_size=1, unique=True)
exp_info = st.dictionaries(names, json_scalars | st.lists(json_scalars, max_size=5), max_size=5)
device_classes = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.:]{0,100}\Z")
experiment_keys = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")



def optional(strategy):
    return st.none() | strategy


def args_of(**fields: Any):
    """A dict strategy where every field may be missing (for optional fields use optional())."""
    required = {k: v for k, v in fields.items() if not k.endswith("_")}
    maybe = {k.rstrip("_"): v for k, v in fields.items() if k.endswith("_")}
    return st.fixed_dictionaries(required, optional=maybe)


probabilities = st.floats(0, 1)
policies = args_of(seed=optional(st.integers(0, 2**32 - 1)), p_correct=probabilities, p_miss=probabilities,
                   rt=st.sampled_from(["lognormal", "fixed"]), rt_mean=st.floats(0.001, 10),
                   rt_sd=st.floats(0, 10), hold=st.floats(0, 1))  # every field: dumps compare equal


ARGS = {
    "ping": st.just({}), "state": st.just({}), "list_experiments": st.just({}), "rescan": st.just({}), "pause": st.just({}),
    "resume": st.just({}), "stop": st.just({}), "get_exp_info": st.just({}),
    "add_experiment": args_of(path=st.text(min_size=1, max_size=80), key_=optional(experiment_keys)),
    "run": args_of(key=names, exp_info_=optional(exp_info), seed_=optional(st.integers(0, 2**32 - 1)),
                   simulate_=optional(policies)),
    "abort": args_of(grace_=st.floats(0, 60) | st.integers(0, 60)),
    "set_exp_info": args_of(values=exp_info.filter(bool)),
    "add_data": args_of(name=names, value=json_values.filter(lambda v: depth(v) <= 8)),
    "annotate": args_of(text=st.text(min_size=1, max_size=200)),
    "trials": args_of(n_=st.integers(1, 10_000), start_=st.integers(0, 1_000_000)),
    "skip_trials": args_of(n_=st.integers(1, 10_000)),
    "rewind_trials": args_of(n_=st.integers(1, 10_000)),
    "setup_window": args_of(
        size_=optional(st.lists(st.integers(1, 32_768), min_size=2, max_size=2)),
        fullscr_=optional(st.booleans()),
        screen_=optional(st.integers(0, 64)), color_=optional(st.text(min_size=1, max_size=64)),
        units_=optional(st.sampled_from(["height", "norm", "pix", "deg", "cm"])),
        frame_rate_=optional(st.floats(min_value=1e-3, max_value=1000))),
    "check_timing": args_of(frames_=st.integers(10, 1200)),
    "subscribe": args_of(topics=topics),
    "unsubscribe": args_of(topics=topics),
    "replay": args_of(since=st.integers(0, 2**62)),
    "list_runs": args_of(limit_=st.integers(1, 1000)),
    "get_run": args_of(run_id=names),
    "list_devices": st.just({}),
    "list_available_devices": args_of(device_class_=optional(device_classes)),
    "add_device": args_of(name=experiment_keys, device_class=device_classes,
                          params_=st.dictionaries(names, st.integers() | st.text(max_size=20), max_size=8)),
    "remove_device": args_of(name=experiment_keys),
    "setup_devices": args_of(key=names),
    "clients": st.just({}),
    "plan_start": st.fixed_dictionaries({"toml": st.text(min_size=1, max_size=200)},
                                        optional={"simulate": optional(policies)}),
    "plan_pause": st.just({}), "plan_continue": st.just({}), "plan_skip": st.just({}),
    "plan_cancel": st.just({}), "plan_state": st.just({}),
}


def test_strategies_cover_every_command():
    assert set(ARGS) == set(COMMANDS)


@st.composite
def valid_requests(draw):
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    return {"v": 1, "type": "request", "id": draw(request_ids), "cmd": cmd, "args": draw(ARGS[cmd])}


@FUZZ
@given(st.text(max_size=300))
def test_any_text_is_a_message_or_a_protocol_error(text):
    parse_or_error(text)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_a_message_or_a_protocol_error(data):
    result = parse_or_error(data)
    if isinstance(result, ProtocolError):
        assert result.code in (ErrorCode.INVALID_MESSAGE, ErrorCode.INVALID_JSON)


@FUZZ
@given(json_values)
def test_any_json_value_is_handled(value):
    result = parse_or_error(json.dumps(value))
    if not isinstance(value, dict):
        assert isinstance(result, ProtocolError) and result.code is ErrorCode.INVALID_MESSAGE


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "type", "id", "cmd", "args", "token", "role", "since", "x"]),
                       json_values | st.sampled_from([1, "request", "auth", "ping", "run", {}]), max_size=6))
def test_envelope_like_objects_are_handled(message):
    result = parse_or_error(json.dumps(message))
    if isinstance(result, ProtocolError) and result.request_id is not None:
        assert result.request_id == message["id"] and message.get("type") == "request"


@FEW
@given(valid_requests(), st.booleans())
def test_valid_requests_parse_to_their_command(message, as_bytes):
    text = json.dumps(message)
    parsed = parse_client_message(text.encode() if as_bytes else text)
    assert type(parsed) is REQUEST_MODELS[message["cmd"]]
    assert parsed.cmd == message["cmd"] and parsed.id == message["id"]
    dumped = parsed.args.model_dump(mode="json")
    for key, value in message["args"].items():
        assert dumped[key] == value
    assert parse_client_message(dumps(parsed)) == parsed


# --- mutations: a wrong JSON type in one field -> invalid_args, id preserved --------------------

WRONG = {"string": "wrong", "integer": 7, "number": 1.5, "boolean": True, "null": None,
         "array": [1], "object": {"k": 1}}


def accepted_kinds(schema: dict[str, Any], defs: dict[str, Any]) -> set[str] | None:
    """JSON kinds a field accepts (None: anything)."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        if "enum" in target:
            return {"string"}
        return accepted_kinds(target, defs)
    if "anyOf" in schema:
        kinds: set[str] = set()
        for part in schema["anyOf"]:
            sub = accepted_kinds(part, defs)
            if sub is None:
                return None
            kinds |= sub
        return kinds
    if "const" in schema or "enum" in schema:
        return {"string"}
    kind = schema.get("type")
    if kind is None:
        return None
    return {kind, "integer"} if kind == "number" else {kind}


SCHEMA = json_schema()
FIELDS = [
    (cmd, name, kinds)
    for cmd, model in COMMANDS.items()
    for name, prop in SCHEMA["$defs"][model.__name__].get("properties", {}).items()
    if (kinds := accepted_kinds(prop, SCHEMA["$defs"])) is not None
]


def test_mutation_targets_exist():
    every_field = {(cmd, name) for cmd, model in COMMANDS.items() for name in model.model_fields}
    assert {(cmd, name) for cmd, name, _ in FIELDS} == every_field - {("add_data", "value")}
    assert ("skip_trials", "n", frozenset({"integer"})) in [(c, n, frozenset(k)) for c, n, k in FIELDS]


@FEW
@given(st.data())
def test_wrong_types_are_invalid_args_with_the_id(data):
    cmd, field, kinds = data.draw(st.sampled_from(FIELDS))
    wrong_kind = data.draw(st.sampled_from(sorted(set(WRONG) - kinds)))
    message = {"v": 1, "type": "request", "id": data.draw(request_ids), "cmd": cmd,
               "args": data.draw(ARGS[cmd])}
    message["args"][field] = WRONG[wrong_kind]
    error = parse_or_error(json.dumps(message))
    assert isinstance(error, ProtocolError), (cmd, field, wrong_kind)
    assert error.code is ErrorCode.INVALID_ARGS
    assert error.request_id == message["id"]
    assert any(d["loc"][:2] == ["args", field] for d in error.details)


@FEW
@given(valid_requests(), st.sampled_from(["x", "extra", "argz"]), json_values)
def test_unknown_args_are_invalid_args(message, key, value):
    assume(key not in message["args"])
    message["args"][key] = value
    error = parse_or_error(json.dumps(message))
    assert isinstance(error, ProtocolError) and error.code is ErrorCode.INVALID_ARGS
    assert error.request_id == message["id"]


@FEW
@given(valid_requests(), st.text(min_size=1, max_size=20))
def test_unknown_commands_keep_the_id(message, cmd):
    assume(cmd not in COMMANDS)
    message["cmd"] = cmd
    error = parse_or_error(json.dumps(message))
    assert isinstance(error, ProtocolError) and error.code is ErrorCode.UNKNOWN_COMMAND
    assert error.request_id == message["id"]


@pytest.mark.parametrize("size", [60, 100, 5000, 1 << 20])
def test_size_limit_is_exact(size):
    message = {"v": 1, "type": "request", "id": 1, "cmd": "add_data", "args": {"name": "n", "value": ""}}
    message["args"]["value"] = "é" * max(0, (size - len(json.dumps(message, ensure_ascii=False))) // 2)
    text = json.dumps(message, ensure_ascii=False)
    limit = len(text.encode())
    assert parse_client_message(text, max_bytes=limit).cmd == "add_data"
    assert parse_client_message(text.encode(), max_bytes=limit).cmd == "add_data"
    for raw in (text, text.encode()):
        with pytest.raises(ProtocolError) as caught:
            parse_client_message(raw, max_bytes=limit - 1)
        assert caught.value.code is ErrorCode.TOO_LARGE and caught.value.request_id is None
