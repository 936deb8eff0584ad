"""Unit tests of the protocol layer: parsing, error codes, roles, serialisation, docs drift."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from liaison.protocol import (
    COMMANDS, CONTROLLER_COMMANDS, EVENT_DATA_MODELS, MAX_DEPTH, OBSERVER_COMMANDS, REQUEST_MODELS,
    TOPIC_OF_EVENT, Auth, CloseCode, ErrorBody, ErrorCode, EventMessage, Gap, Goodbye, Hello,
    ProtocolError, Reply, Request, Topic, Welcome, dumps, error_code_for, event_json, event_message,
    parse_client_message, parse_server_message, reply_error, reply_ok, required_role, to_jsonable,
)
from liaison.protocol.examples import example_messages
from liaison.protocol.markdown import markdown_doc
from liaison.protocol.schema import json_schema
from session import errors as session_errors
from session import events as session_events

PROJECT = Path(__file__).resolve().parents[2]


def req(cmd="ping", args=None, id=1, **extra) -> str:
    message = {"v": 1, "type": "request", "id": id, "cmd": cmd, **extra}
    if args is not None:
        message["args"] = args
    return json.dumps(message)


def fail(raw, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, **kwargs)
    error = caught.value
    json.dumps(error.details)  # details are always JSON-safe
    return error


def strict_loads(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in output"))


# --- error paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, code, request_id", [
    ("{not json", ErrorCode.INVALID_JSON, None),
    ("", ErrorCode.INVALID_JSON, None),
    ('{"v": 1, "type": "request", "id": 1, "cmd": "abort", "args": {"grace": NaN}}',
     ErrorCode.INVALID_JSON, None),
    ('{"v": 1, "type": "request", "id": 1, "cmd": "abort", "args": {"grace": Infinity}}',
     ErrorCode.INVALID_JSON, None),
    ('{"v": 1, "type": "request", "id": 1, "cmd": "abort", "args": {"grace": -Infinity}}',
     ErrorCode.INVALID_JSON, None),
    ('{"v": 1, "type": "request", "id": 1, "cmd": "abort", "args": {"grace": 1e999}}',
     ErrorCode.INVALID_JSON, None),
    ('{"v": 1, "type": "request", "id": 1, "cmd": "replay", "args": {"since": ' + "9" * 5000 + "}}",
     ErrorCode.INVALID_JSON, None),
    ("[1, 2, 3]", ErrorCode.INVALID_MESSAGE, None),
    ('"hello"', ErrorCode.INVALID_MESSAGE, None),
    ("null", ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "fly"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "reply", "id": 3, "ok": true}', ErrorCode.INVALID_MESSAGE, None),
    ('{"type": "request", "id": 4, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, 4),
    ('{"v": 2, "type": "request", "id": 4, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, 4),
    ('{"v": "1", "type": "request", "id": 4, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, 4),
    ('{"v": true, "type": "request", "id": 4, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, 4),
    ('{"v": 1.0, "type": "request", "id": 4, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, 4),
    ('{"v": 1, "type": "request", "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": 1.5, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": true, "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": [1], "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": "' + "x" * 65 + '", "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": ' + str(2**63) + ', "cmd": "ping"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "request", "id": "a"}', ErrorCode.INVALID_MESSAGE, "a"),
    ('{"v": 1, "type": "request", "id": "a", "cmd": 5}', ErrorCode.INVALID_MESSAGE, "a"),
    ('{"v": 1, "type": "request", "id": "a", "cmd": "ping", "extra": 1}', ErrorCode.INVALID_MESSAGE, "a"),
    ('{"v": 1, "type": "request", "id": "u1", "cmd": "fly", "args": {}}', ErrorCode.UNKNOWN_COMMAND, "u1"),
    ('{"v": 1, "type": "request", "id": -3, "cmd": "", "args": {}}', ErrorCode.UNKNOWN_COMMAND, -3),
    ('{"v": 1, "type": "request", "id": 0, "cmd": "Ping"}', ErrorCode.UNKNOWN_COMMAND, 0),
    ('{"v": 1, "type": "auth", "role": "admin"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "auth", "token": 5}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "auth", "since": -1}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "auth", "client": "' + "c" * 101 + '"}', ErrorCode.INVALID_MESSAGE, None),
    ('{"v": 1, "type": "auth", "password": "x"}', ErrorCode.INVALID_MESSAGE, None),
])
def test_error_codes(raw, code, request_id):
    error = fail(raw)
    assert error.code is code, error
    assert error.request_id == request_id


@pytest.mark.parametrize("cmd, args, field", [
    ("skip_trials", {"n": "two"}, "n"),
    ("skip_trials", {"n": "2"}, "n"),
    ("skip_trials", {"n": 2.0}, "n"),
    ("skip_trials", {"n": True}, "n"),
    ("skip_trials", {"n": 0}, "n"),
    ("skip_trials", {"n": 10_001}, "n"),
    ("rewind_trials", {"m": 1}, "m"),
    ("trials", {"start": -1}, "start"),
    ("run", {}, "key"),
    ("run", {"key": ""}, "key"),
    ("run", {"key": "k", "seed": -1}, "seed"),
    ("run", {"key": "k", "seed": 2**32}, "seed"),
    ("run", {"key": "k", "exp_info": {"a": {"nested": 1}}}, "exp_info"),
    ("run", {"key": "k", "exp_info": {"a": [[1]]}}, "exp_info"),
    ("run", {"key": "k", "exp_info": []}, "exp_info"),
    ("set_exp_info", {"values": {}}, "values"),
    ("abort", {"grace": 61}, "grace"),
    ("abort", {"grace": "2"}, "grace"),
    ("abort", {"grace": False}, "grace"),
    ("add_data", {"name": "x"}, "value"),
    ("add_data", {"name": "", "value": 1}, "name"),
    ("add_data", {"name": "x", "value": [[[[[[[[[1]]]]]]]]]}, "value"),
    ("annotate", {"text": ""}, "text"),
    ("annotate", {"text": "x" * 10_001}, "text"),
    ("setup_window", {"size": [800]}, "size"),
    ("setup_window", {"size": [800, 0]}, "size"),
    ("setup_window", {"fullscr": 1}, "fullscr"),
    ("setup_window", {"units": "inch"}, "units"),
    ("setup_window", {"frame_rate": 0}, "frame_rate"),
    ("check_timing", {"frames": 5}, "frames"),
    ("check_timing", {"frames": 1201}, "frames"),
    ("subscribe", {"topics": ["nope"]}, "topics"),
    ("subscribe", {"topics": []}, "topics"),
    ("subscribe", {"topics": "runs"}, "topics"),
    ("replay", {}, "since"),
    ("list_runs", {"limit": 0}, "limit"),
    ("get_run", {"run_id": 5}, "run_id"),
    ("ping", {"x": 1}, "x"),
    ("add_experiment", {"path": "a.psyexp", "key": "../escape"}, "key"),
    ("add_experiment", {"path": "a.psyexp", "key": "dir/exp"}, "key"),
])
def test_invalid_args_keeps_the_id_and_names_the_field(cmd, args, field):
    error = fail(req(cmd, args, id="r-9"))
    assert error.code is ErrorCode.INVALID_ARGS
    assert error.request_id == "r-9"
    assert any(d["loc"][:2] == ["args", field] for d in error.details), error.details


@pytest.mark.parametrize("args", [None, [], "x", 3])
def test_args_must_be_an_object(args):
    error = fail(json.dumps({"v": 1, "type": "request", "id": 5, "cmd": "ping", "args": args}))
    assert error.code is ErrorCode.INVALID_ARGS and error.request_id == 5
    assert error.details[0]["loc"] == ["args"]


def test_too_large_is_checked_before_parsing():
    error = fail("x" * 101, max_bytes=100)
    assert error.code is ErrorCode.TOO_LARGE and error.request_id is None
    assert fail(b"{" * 101, max_bytes=100).code is ErrorCode.TOO_LARGE
    # counted in UTF-8 bytes, not characters: 40 three-byte characters are 120 bytes
    assert fail("€" * 40, max_bytes=100).code is ErrorCode.TOO_LARGE
    assert parse_client_message(req(), max_bytes=100).cmd == "ping"
    big = req("annotate", {"text": "x" * (2 << 20)}, id="big")
    assert fail(big).code is ErrorCode.TOO_LARGE


def test_binary_frames_are_read_as_utf8_json():
    assert parse_client_message(req("ping", id="b").encode()).id == "b"
    assert parse_client_message(bytearray(req().encode())).cmd == "ping"
    assert fail(b"\xff\xfe{}").code is ErrorCode.INVALID_MESSAGE
    truncated = '{"v": 1, "type": "auth", "token": "x"}'.encode() + b"\xc3"
    assert fail(truncated).code is ErrorCode.INVALID_MESSAGE


def test_nesting_is_limited():
    deep_ok = {"v": 1, "type": "request", "id": 1, "cmd": "add_data",
               "args": {"name": "x", "value": 1}}
    assert parse_client_message(json.dumps(deep_ok)).cmd == "add_data"
    value = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    deep = req("add_data", {"name": "x", "value": value}, id="deep")
    error = fail(deep)
    assert error.code is ErrorCode.INVALID_MESSAGE and error.request_id == "deep"
    assert fail("[" * 200_000 + "]" * 200_000).code is ErrorCode.INVALID_MESSAGE
    assert fail('{"a":' * 100_000 + "1" + "}" * 100_000).code is ErrorCode.INVALID_MESSAGE


def test_error_details_clip_huge_inputs():
    error = fail(req("annotate", {"text": "y" * 20_000}, id=1))
    assert error.code is ErrorCode.INVALID_ARGS
    assert len(json.dumps(error.details)) < 2000


def test_valid_messages_parse():
    auth = parse_client_message('{"v": 1, "type": "auth", "token": "t", "role": "observer", "since": 7}')
    assert isinstance(auth, Auth) and auth.role == "observer" and auth.since == 7 and auth.client is None
    request = parse_client_message(req("skip_trials", {"n": 3}, id="s"))
    assert isinstance(request, Request) and isinstance(request, REQUEST_MODELS["skip_trials"])
    assert request.args.n == 3
    assert parse_client_message(req("trials", id=2)).args.model_dump() == {"n": 1, "start": 0}
    window = parse_client_message(req("setup_window", {"size": [800, 600], "frame_rate": 60}))
    assert window.args.model_dump(exclude_none=True) == {"size": (800, 600), "frame_rate": 60.0}
    topics = parse_client_message(req("subscribe", {"topics": ["runs", "data", "runs"]}))
    assert topics.args.topics == [Topic.RUNS, Topic.DATA]
    run = parse_client_message(req("run", {"key": "k", "exp_info": {"p": "01", "n": 2, "l": [1, "a", None]},
                                           "seed": 2**32 - 1}))
    assert run.args.exp_info == {"p": "01", "n": 2, "l": [1, "a", None]}
    data = parse_client_message(req("add_data", {"name": "x", "value": None}))
    assert data.args.value is None


def test_request_model_validate_dispatches_on_cmd():
    message = {"v": 1, "type": "request", "id": 1, "cmd": "annotate", "args": {"text": "hi"}}
    request = Request.model_validate(message)
    assert type(request) is REQUEST_MODELS["annotate"]
    with pytest.raises(ValidationError):
        Request.model_validate({"v": 1, "type": "request", "id": 1, "cmd": "fly"})


# --- roles ----------------------------------------------------------------------------------

def test_roles_table():
    assert OBSERVER_COMMANDS == {"ping", "state", "list_experiments", "get_exp_info", "trials", "subscribe",
                                 "unsubscribe", "replay", "list_runs", "get_run", "list_devices", "plan_state"}
    assert {"add_device", "remove_device", "setup_devices", "list_available_devices"} <= CONTROLLER_COMMANDS
    assert CONTROLLER_COMMANDS == set(COMMANDS) - OBSERVER_COMMANDS
    assert {"run", "pause", "resume", "stop", "abort", "set_exp_info", "add_data", "annotate", "skip_trials",
            "rewind_trials", "setup_window", "add_experiment", "add_device", "remove_device", "setup_devices",
            "list_available_devices", "rescan", "check_timing", "clients",
            "plan_start", "plan_pause", "plan_continue", "plan_skip", "plan_cancel"} == CONTROLLER_COMMANDS
    assert set(REQUEST_MODELS) == set(COMMANDS)
    defs = json_schema()["$defs"]
    for cmd, model in REQUEST_MODELS.items():
        assert defs[model.__name__]["x-role"] == required_role(cmd)


# --- round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_command_round_trips(cmd):
    for request_id in (1, "abc", -(2**63), "x" * 64):
        args = COMMANDS[cmd].model_validate(COMMANDS[cmd].example_args)
        original = REQUEST_MODELS[cmd](id=request_id, args=args)
        text = dumps(original)
        parsed = parse_client_message(text)
        assert parsed == original
        assert type(parsed) is type(original)
        assert dumps(parsed) == text
        assert json.loads(text)["cmd"] == cmd


def test_auth_round_trips():
    auth = Auth(token="t" * 20, role="observer", since=0, client="me")
    assert parse_client_message(dumps(auth)) == auth
    assert json.loads(dumps(Auth())) == {"v": 1, "type": "auth", "token": None, "role": "controller",
                                         "since": None, "client": None}


def test_server_messages_serialise_to_documented_shapes():
    hello = Hello(server="liaison 0.1.0", session_id="s", auth="none", max_message_bytes=10)
    assert json.loads(dumps(hello)) == {
        "v": 1, "type": "hello", "protocol": 1, "server": "liaison 0.1.0", "session_id": "s", "auth": "none",
        "max_message_bytes": 10}
    welcome = Welcome(role="observer", client_id="c", state={"a": 1}, last_seq=3, replay="gap")
    assert json.loads(dumps(welcome)) == {
        "v": 1, "type": "welcome", "role": "observer", "client_id": "c", "state": {"a": 1}, "last_seq": 3,
        "replay": "gap"}
    assert dumps(Reply(id="x", ok=True, result=[1, 2])) == \
        '{"v":1,"type":"reply","id":"x","ok":true,"result":[1,2],"error":null}'
    assert json.loads(dumps(Gap(from_seq=1, to_seq=5, reason="r"))) == {
        "v": 1, "type": "gap", "from_seq": 1, "to_seq": 5, "reason": "r"}
    assert json.loads(dumps(Goodbye(code=CloseCode.SLOW_CONSUMER, reason="slow"))) == {
        "v": 1, "type": "goodbye", "code": 4008, "reason": "slow"}
    for text in example_messages().values():
        message = json.loads(text)
        if message["type"] in ("auth", "request"):
            assert dumps(parse_client_message(text)) == text
        else:
            assert dumps(parse_server_message(text)) == text


def test_reply_helpers_and_consistency():
    error = ProtocolError(ErrorCode.NOT_FOUND, "no such run", {"run_id": ("a", 1)}, request_id=9)
    assert json.loads(dumps(reply_error(error))) == {
        "v": 1, "type": "reply", "id": 9, "ok": False, "result": None,
        "error": {"code": "not_found", "message": "no such run", "details": {"run_id": ["a", 1]}}}
    assert json.loads(dumps(reply_ok("q", {"t": float("nan")}))) == {
        "v": 1, "type": "reply", "id": "q", "ok": True, "result": {"t": None}, "error": None}
    with pytest.raises(ValidationError):
        Reply(id=1, ok=True, error=ErrorBody(code="busy", message="m"))
    with pytest.raises(ValidationError):
        Reply(id=1, ok=False)

    class Thing:
        def __str__(self) -> str:
            return "thing"

    # values pydantic cannot serialise fall back to to_jsonable (here: str())
    assert json.loads(dumps(Reply(id=None, ok=True, result={"t": Thing()})))["result"] == {"t": "thing"}


def sample_event(cls: type[session_events.Event]) -> session_events.Event:
    values = {"str": "s", "str | None": None, "int": 3, "float": 0.5, "float | None": 0.25, "dict[str, Any]": {"a": (1, 2)},
              "list[str]": ["f.csv"], "list[dict[str, Any]]": [{"x": float("nan")}], "Any": {"deep": [1]},
              "bool | None": False, "dict[str, Any] | None": {"frames": 2}}
    kwargs = {f.name: values[f.type] for f in dataclasses.fields(cls) if f.name not in ("seq", "time")}
    return cls(seq=12, time=1700000000.5, **kwargs)


@pytest.mark.parametrize("event_type", sorted(session_events.EVENT_TYPES))
def test_event_messages_match_the_event_models(event_type):
    event = sample_event(session_events.EVENT_TYPES[event_type])
    message = event_message(event)
    assert isinstance(message, EventMessage)
    assert (message.seq, message.event, message.time) == (12, event_type, 1700000000.5)
    expected = {f.name for f in dataclasses.fields(event)} - {"seq", "time"}
    assert set(message.data) == expected
    text = event_json(event)
    assert text == dumps(message)
    wire = strict_loads(text)
    assert set(wire) == {"v", "type", "seq", "event", "time", "data"}
    EVENT_DATA_MODELS[event_type].model_validate(wire["data"])
    assert parse_server_message(text) == EventMessage.model_validate(wire)
    assert parse_server_message("[" + text + "," + text + "]")[1].seq == 12


def test_event_data_models_come_from_the_dataclasses():
    assert set(EVENT_DATA_MODELS) == set(session_events.EVENT_TYPES)
    for event_type, cls in session_events.EVENT_TYPES.items():
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("seq", "time")]
        assert list(EVENT_DATA_MODELS[event_type].model_fields) == fields


def test_every_event_type_has_a_topic():
    assert set(TOPIC_OF_EVENT) == set(session_events.EVENT_TYPES)
    assert all(isinstance(topic, Topic) and topic is not Topic.ALL for topic in TOPIC_OF_EVENT.values())
    assert Topic.ALL.value == "all"


# --- to_jsonable ----------------------------------------------------------------------------

def test_to_jsonable_numpy():
    np = pytest.importorskip("numpy")
    value = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "nan": np.float64("nan"),
             "a": np.arange(6).reshape(2, 3), "fa": np.array([1.5, np.nan, np.inf]), "s": np.str_("x"),
             "zero_d": np.array(7), np.int32(4): "key", "t": np.datetime64("2024-01-02T03:04:05")}
    result = to_jsonable(value)
    assert result == {"i": 3, "f": 0.5, "b": True, "nan": None, "a": [[0, 1, 2], [3, 4, 5]],
                      "fa": [1.5, None, None], "s": "x", "zero_d": 7, "4": "key", "t": "2024-01-02T03:04:05"}
    assert type(result["i"]) is int and type(result["b"]) is bool and type(result["s"]) is str
    strict_loads(json.dumps(result))


def test_to_jsonable_plain_values():
    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: float
        y: tuple

    class Broken:
        def __str__(self):
            raise RuntimeError("no")

    cyclic: list = [1]
    cyclic.append(cyclic)
    value = {
        "nan": float("nan"), "inf": float("-inf"), "tuple": (1, (2, 3)), "set": {3, 1, 2},
        1: "int key", None: "none key", (1, 2): "tuple key", "bytes": b"\x00\xff",
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5), "day": datetime.date(2024, 1, 2),
        "span": datetime.timedelta(seconds=1.5), "enum": Colour.RED, "code": ErrorCode.BUSY,
        "point": Point(1.0, (2,)), "path": Path("a/b"), "broken": Broken(), "cyclic": cyclic,
        "nested": [{"deep": [float("inf"), {"k": (float("nan"),)}]}],
    }
    result = to_jsonable(value)
    assert result["nan"] is None and result["inf"] is None
    assert result["tuple"] == [1, [2, 3]] and result["set"] == [1, 2, 3]
    assert result["1"] == "int key" and result["null"] == "none key" and result["[1, 2]"] == "tuple key"
    assert result["bytes"] == "AP8="
    assert result["when"] == "2024-01-02T03:04:05" and result["day"] == "2024-01-02" and result["span"] == 1.5
    assert result["enum"] == "red" and result["code"] == "busy"
    assert result["point"] == {"x": 1.0, "y": [2]}
    assert result["path"] == "a/b" and result["broken"].startswith("<")
    assert result["nested"] == [{"deep": [None, {"k": [None]}]}]
    strict_loads(json.dumps(result))
    assert to_jsonable(True) is True and to_jsonable(None) is None and to_jsonable("s") == "s"
    assert to_jsonable(2**70) == 2**70 and math.isclose(to_jsonable(0.1), 0.1)


# --- errors ---------------------------------------------------------------------------------

def test_session_error_codes_map_to_protocol_codes():
    for cls in vars(session_errors).values():
        if isinstance(cls, type) and issubclass(cls, session_errors.SessionError):
            assert error_code_for(cls.code).value == cls.code
    assert error_code_for("unknown_command") is ErrorCode.INTERNAL
    assert error_code_for(None) is ErrorCode.INTERNAL


def test_protocol_error_fields():
    error = ProtocolError("busy", "another run", request_id="r")
    assert error.code is ErrorCode.BUSY and error.message == "another run" and error.details is None
    assert str(error) == "another run" and "busy" in repr(error)
    assert str(ErrorCode.BUSY) == "busy" and ErrorCode("busy") == "busy"
    assert int(CloseCode.PROTOCOL_VIOLATION) == 4009 and CloseCode.GOING_AWAY == 1001
    with pytest.raises(ValueError):
        ProtocolError("nope", "x")


# --- schema and docs ------------------------------------------------------------------------

def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_json_schema_is_self_contained():
    schema = json_schema()
    defs = schema["$defs"]
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/") and ref.split("/")[-1] in defs, ref
    for name in ("Auth", "Request", "ClientMessage", "ServerMessage", "ServerFrame", "Hello", "Welcome",
                 "Reply", "EventMessage", "Gap", "Goodbye", "ErrorBody"):
        assert name in defs
    assert set(schema["x-events"]) == set(session_events.EVENT_TYPES)
    assert set(schema["x-commands"]) == set(COMMANDS)
    assert set(schema["x-error-codes"]) == {code.value for code in ErrorCode}
    mapping = defs["Request"]["discriminator"]["mapping"]
    assert set(mapping) == set(COMMANDS)
    assert json.dumps(schema, sort_keys=True) == json.dumps(json_schema(), sort_keys=True)


def test_markdown_doc_covers_everything_and_is_deterministic():
    doc = markdown_doc()
    assert doc == markdown_doc()
    for name in [*COMMANDS, *session_events.EVENT_TYPES, *(c.value for c in ErrorCode)]:
        assert f"`{name}`" in doc or f"### {name}" in doc, name
    for close in CloseCode:
        assert str(close.value) in doc


def load_generator():
    path = PROJECT / "scripts" / "gen_protocol_doc.py"
    spec = importlib.util.spec_from_file_location("gen_protocol_doc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_up_to_date():
    assert load_generator().main(["--check"]) == 0, "run scripts/gen_protocol_doc.py"


def test_check_mode_reports_drift(tmp_path, capsys):
    module = load_generator()
    assert module.main(["--check"], docs=tmp_path) == 1
    assert "out of date" in capsys.readouterr().err
    assert module.main([], docs=tmp_path) == 0
    assert module.main(["--check"], docs=tmp_path) == 0
    (tmp_path / "protocol.md").write_text("stale\n")
    assert module.main(["--check"], docs=tmp_path) == 1


def test_protocol_imports_nothing_heavy():
    code = ("import sys, liaison.protocol, liaison.protocol.schema, liaison.protocol.markdown; "
            "print(sorted(m for m in ('psychopy', 'websockets', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
