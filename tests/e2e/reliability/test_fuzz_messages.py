"""10,000 generated hostile or odd messages over real authenticated connections.

A seeded generator builds every message together with the outcome the
protocol promises for it (docs/protocol.md): the reply's error code (or ok)
and whether the reply must echo the request id. Messages are pipelined in
chunks of 200 and every reply is accounted for: exactly one per message,
with the expected code, on connections that stay open. Nothing sent can
change the session: run/stop/abort/add_experiment/setup_window/set_exp_info
only ever go out with arguments that fail validation (checked locally
before sending), the other commands are read-only or fail with `conflict`
while no run is active. Afterwards the session is unchanged and still runs
an experiment.
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest

from liaison.client import Client
from liaison.protocol import COMMANDS, MAX_MESSAGE_BYTES, ProtocolError, Topic, parse_client_message
from reliability_helpers import as_messages, check_reply, raw_session

pytestmark = pytest.mark.timeout(120)

SEED = 0x5EED_2024
N_MESSAGES = 10_000
CHUNK = 200
OBSERVER_EVERY = 4  # every 4th chunk goes over the observer connection
CHUNK_TIMEOUT = 30.0

OK = "ok"
DESTRUCTIVE = frozenset({"run", "stop", "abort", "add_experiment", "setup_window", "set_exp_info"})
# Controller commands that, with no run active, can only fail with `conflict`.
CONFLICT_WHEN_IDLE = frozenset({"pause", "resume", "skip_trials", "rewind_trials", "add_data"})


@dataclass
class Case:
    frame: str | bytes
    rid: Any  # the id the reply must carry; None: the id cannot be read, the reply's id is null
    expect: str  # "ok" or the error code
    kind: str  # for failure messages

    def describe(self) -> str:
        shown = self.frame
        if len(shown) > 300:
            shown = shown[:300] + (b"..." if isinstance(shown, bytes) else "...")
        return f"{self.kind}: {shown!r}"


class _Raw(str):
    """JSON text spliced verbatim into a message (lone surrogate escapes, huge literals)."""


def encode(value: Any, ensure_ascii: bool = True) -> str:
    """json.dumps that splices ``_Raw`` fragments in as they are."""
    fragments: list[str] = []

    def mark(v: Any) -> Any:
        if isinstance(v, _Raw):
            fragments.append(str(v))
            return f"\x00RAW{len(fragments) - 1}\x00"
        if isinstance(v, dict):
            return {mark(k) if isinstance(k, _Raw) else k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(value), ensure_ascii=ensure_ascii, allow_nan=False)
    for index, fragment in enumerate(fragments):
        text = text.replace(json.dumps(f"\x00RAW{index}\x00"), fragment)
    return text


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("out of range")
    return value


def _reject(name: str) -> Any:
    raise ValueError(name)


def json_outcome(raw: str | bytes) -> str | None:
    """For frames that are not protocol objects: the documented error code, from the spec.

    Not UTF-8 or nested deeper than the limit: invalid_message; not JSON (NaN,
    Infinity, out-of-range numbers included): invalid_json; JSON but not an
    object: invalid_message. None when the frame is a JSON object.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_message"
    try:
        value = json.loads(raw, parse_constant=_reject, parse_float=_finite)
    except RecursionError:
        return "invalid_message"
    except ValueError:
        return "invalid_json"
    return None if isinstance(value, dict) else "invalid_message"


def nested_list(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


INT_BAD = ["2", "x", 1.5, -0.5, True, False, [], [1], {}, {"n": 1}, -(2**80), 1e308, -1e308]  # all bad for any int field
STR_BAD = [1, 0, 1.5, True, False, [], ["a"], {}, {"a": "b"}]
TOPICS = [t.value for t in Topic]
TOPICS_BAD = [None, [], "all", ["nope"], [1], [None], ["ALL"], ["all"] * 33, {"all": True}, [["all"]], 7]
EXP_INFO_BAD = ["x", [], 1, True, {"a": {"b": 1}}, {"": 1}, {"a": [[1]]}, {"a": [{"b": 1}]},
                {"x" * 201: 1}, {f"k{i}": 1 for i in range(201)}, {"a": "x" * 10_001},
                {"a": list(range(1001))}, {"a": _Raw('"\\ud800"')}]

# command -> field -> values that must fail validation (whatever the other fields hold).
BAD_ARGS: dict[str, dict[str, list[Any]]] = {
    "list_runs": {"limit": INT_BAD + [None, 0, -1, 1001, -(2**63), 2**63 - 1, 2**80]},
    "get_run": {"run_id": STR_BAD + [None, "", "x" * 201, _Raw('"\\udfff"')]},
    "replay": {"since": INT_BAD + [None, -1, -(2**63)]},
    "trials": {"n": INT_BAD + [None, 0, 10_001, -(2**63), 2**80],
               "start": INT_BAD + [None, -1, 1_000_001, 2**63 - 1, 2**80]},
    "skip_trials": {"n": INT_BAD + [None, 0, -1, 10_001, 2**63 - 1, 2**80]},
    "rewind_trials": {"n": INT_BAD + [None, 0, -1, 10_001, -(2**63), 2**80]},
    "subscribe": {"topics": TOPICS_BAD},
    "unsubscribe": {"topics": TOPICS_BAD},
    "annotate": {"text": STR_BAD + [None, "", "x" * 10_001, _Raw('"\\ud800"'), _Raw('"a\\udc00b"')]},
    "add_data": {"name": STR_BAD + [None, "", "x" * 201],
                 "value": [nested_list(d) for d in (9, 12, 20, 30)] + [{"a": nested_list(8)}]},
    "set_exp_info": {"values": EXP_INFO_BAD + [None, {}]},
    "run": {"key": STR_BAD + [None, "", "x" * 201],
            "seed": ["1", 1.5, True, -1, 2**32, 2**80, -(2**63), 1e308, [], {}],
            "exp_info": EXP_INFO_BAD},
    "abort": {"grace": ["1", True, None, -1, -0.001, 60.001, 61, 1e308, -1e308, 2**80, [], {}]},
    "add_experiment": {"path": STR_BAD + [None, "", "x" * 4097], "key": STR_BAD + ["", "x" * 201]},
    "setup_window": {
        "size": ["640x480", [1], [0, 5], [5, 0], [1, 2, 3], [1.5, 2], [True, 1], [32_769, 1], 640, {}],
        "fullscr": [1, 0, "yes", "true", [], {}],
        "screen": [-1, 65, True, "0", 1.5, 2**80],
        "color": ["", 5, "x" * 65, [], True],
        "units": ["furlongs", 1, "", "PIX", [], True],
        "frame_rate": [0, -1, 1001, "60", True, 1e308, -1e308, []],
    },
}
REQUIRED = {"get_run": "run_id", "replay": "since", "subscribe": "topics", "unsubscribe": "topics",
            "annotate": "text", "add_data": "name", "set_exp_info": "values", "run": "key",
            "add_experiment": "path"}
# Valid arguments for every command (the base that one bad field spoils).
VALID_BASE: dict[str, dict[str, Any]] = {
    "run": {"key": "frames_demo", "exp_info": {"n_trials": 1}, "seed": 1},
    "abort": {"grace": 1.0},
    "add_experiment": {"path": "fixtures/frames_demo.py", "key": "fuzzed"},
    "setup_window": {"size": [320, 240]},
    "set_exp_info": {"values": {"participant": "fuzz"}},
    "get_run": {"run_id": "no-such-run"},
    "replay": {"since": 10**12},
    "subscribe": {"topics": ["all"]},
    "unsubscribe": {"topics": ["trials"]},
    "annotate": {"text": "note"},
    "add_data": {"name": "col", "value": 1},
}
UNKNOWN_COMMANDS = ["fly", "PING", "ping ", " ping", "", "start_run", "current_trial", "future_trials",
                    "update_exp_info", "shutdown", "restart", "kill", "__init__", "__class__", "cmd_ping",
                    "_worker", "start", "state\x00", "p\u0131ng", "list-runs", "\U0001F600", "x" * 5000]
NOT_JSON = ["{", "{not json", "", " ", "\t\n", "nul", "tru", "NaN", "Infinity", "-Infinity", "[NaN]",
            '{"v": NaN}', '{"v": Infinity}', '{"a":1,}', "[1,]", "'x'", "{'v': 1}", '{"v":1 "type":"request"}',
            "1e309", "-1e309", "[1e400]", '{"v":1,"type":"request","id":1,"cmd":"ping","args":{"a":1e999}}',
            "1" + "0" * 4300, '{"v":1,"type":"request","id":' + "9" * 4301 + "}", "\x00", '"unterminated',
            '{"v":1}}', "[]]", "01", "+1", ".5", "0x10", '"\\x41"', '{"a" 1}', "\ufeff{}"]
NOT_OBJECT = ["[]", "[1,2]", '"request"', "123", "-0", "1.5", "null", "true", "false", '[{"v":1}]',
              "1" + "0" * 4299, "1e308", "-1e308", "2.2250738585072014e-308", "1e-400", '"\\ud800"']


class Generator:
    """Deterministic stream of (frame, promised outcome) cases."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.counter = 0
        self.made: collections.Counter = collections.Counter()
        self.weights = [
            (self.valid_command, 14), (self.bad_field, 14), (self.missing_field, 4), (self.unknown_arg, 6),
            (self.args_not_object, 3), (self.unknown_command, 6), (self.envelope_extra, 4),
            (self.bad_version, 4), (self.bad_type, 4), (self.bad_id, 5), (self.bad_cmd, 3),
            (self.not_json, 5), (self.not_object, 4), (self.deep, 4), (self.deep_request, 3),
            (self.value_depth, 3), (self.invalid_utf8, 4), (self.random_binary, 4), (self.binary_request, 3),
            (self.auth_again, 2), (self.duplicate_id, 1), (self.huge_ids, 2), (self.padded, 1),
        ]
        self.makers = [maker for maker, _ in self.weights]
        self.cumulative = list(_accumulate(w for _, w in self.weights))

    # --- ids and text -------------------------------------------------------------------
    def new_id(self) -> Any:
        """A fresh, readable, globally unique request id (ints, strings, edge values)."""
        self.counter += 1
        k = self.counter
        roll = self.r.random()
        if roll < 0.35:
            return k
        if roll < 0.45:
            return -k
        if roll < 0.75:
            return f"s{k}"
        if roll < 0.8:
            return -(2**63) + k
        if roll < 0.85:
            return 2**63 - 1 - k
        if roll < 0.9:
            return str(k).rjust(64, "\u00e9")  # exactly 64 characters, 2 bytes each
        if roll < 0.95:
            return f"{k}\U0001F600\u2028\"\\ \x01"  # astral, separator, quote, backslash, control
        return f"{k}" + " " * (self.r.randint(0, 64 - len(str(k))))

    def text(self, low: int = 1, high: int = 40) -> str:
        alphabet = "abcXYZ019 _-\u00e9\u4e2d\U0001F600\n\t\"\\/<>&\u2028\u200b"
        return "".join(self.r.choice(alphabet) for _ in range(self.r.randint(low, high)))

    def dump(self, message: Any) -> str:
        return encode(message, ensure_ascii=self.r.random() < 0.5)

    def request(self, cmd: Any, args: Any = None, rid: Any = None, **extra: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"v": 1, "type": "request", "id": rid, "cmd": cmd}
        if args is not None or self.r.random() < 0.5:
            message["args"] = {} if args is None else args
        message.update(extra)
        keys = list(message)
        self.r.shuffle(keys)  # field order must not matter
        return {key: message[key] for key in keys}

    # --- valid commands: read-only, or `conflict` while idle --------------------------------
    def valid_command(self, role: str) -> Case:
        rid = self.new_id()
        r = self.r
        choices = ["ping", "state", "list_experiments", "get_exp_info", "list_runs", "get_run", "replay",
                   "trials", "subscribe", "annotate", *sorted(CONFLICT_WHEN_IDLE)]
        cmd = r.choice(choices)
        args: dict[str, Any] = {}
        expect = OK
        if cmd == "list_runs" and r.random() < 0.7:
            args = {"limit": r.choice([1, 1000, r.randint(1, 1000)])}
        elif cmd == "get_run":
            args, expect = {"run_id": f"no-such-run-{self.counter}-" + self.text(1, 20)}, "not_found"
        elif cmd == "replay":
            args = {"since": r.choice([10**12, 2**63 - 1, 10**30])}
        elif cmd == "trials":
            args = {k: v for k, v in (("n", r.randint(1, 10_000)), ("start", r.randint(0, 1_000_000)))
                    if r.random() < 0.6}
            expect = "conflict"
        elif cmd == "subscribe":
            args = {"topics": r.sample(TOPICS, r.randint(1, len(TOPICS))) + (["all"] if r.random() < 0.3 else [])}
        elif cmd == "annotate":
            args = {"text": self.text(1, 200)}
        elif cmd in ("skip_trials", "rewind_trials"):
            args = {"n": r.randint(1, 10_000)} if r.random() < 0.7 else {}
            expect = "conflict"
        elif cmd == "add_data":
            args = {"name": self.text(1, 30), "value": r.choice([1, -2**63, 1e308, "x", None, [1, [2, [3]]],
                                                                  {"a": {"b": [True]}}, nested_list(8)])}
            expect = "conflict"
        elif cmd in ("pause", "resume"):
            expect = "conflict"
        if role == "observer" and cmd in COMMANDS and cmd not in OBSERVER_OK:
            expect = "forbidden"
        return Case(self.dump(self.request(cmd, args or None, rid)), rid, expect, f"valid {cmd}")

    # --- invalid arguments ---------------------------------------------------------------
    def bad_field(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(sorted(BAD_ARGS))
        field_name = self.r.choice(sorted(BAD_ARGS[cmd]))
        args = dict(VALID_BASE.get(cmd, {}))
        args[field_name] = self.r.choice(BAD_ARGS[cmd][field_name])
        return Case(self.dump(self.request(cmd, args, rid)), rid, "invalid_args", f"bad {cmd}.{field_name}")

    def missing_field(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(sorted(REQUIRED))
        args = dict(VALID_BASE[cmd])
        args.pop(REQUIRED[cmd])
        if cmd == "add_data" and self.r.random() < 0.5:
            args = {"name": "col"}  # value missing instead
        return Case(self.dump(self.request(cmd, args, rid)), rid, "invalid_args", f"{cmd} missing a field")

    def unknown_arg(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(sorted(COMMANDS))
        args = dict(VALID_BASE.get(cmd, {}))
        fields = COMMANDS[cmd].model_fields
        name = self.r.choice(["bogus", "ID", "Key", "__proto__", "constructor", "", "x" * 300,
                              self.text(1, 12), "n ", "limit\x00"])
        if name in fields:
            name += "_"
        args[name] = self.r.choice([1, "x", None, [], {}, 2**80, 1e308])
        return Case(self.dump(self.request(cmd, args, rid)), rid, "invalid_args", f"{cmd} unknown arg")

    def args_not_object(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(sorted(COMMANDS))
        args = self.r.choice([None, [], [1], [{}], "x", "", 0, 1, -1, 1.5, True, False, 2**80])
        message = self.request(cmd, {}, rid)
        message["args"] = args
        return Case(self.dump(message), rid, "invalid_args", f"{cmd} args not an object")

    # --- the envelope ------------------------------------------------------------------------
    def unknown_command(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(UNKNOWN_COMMANDS) if self.r.random() < 0.6 else "x-" + self.text(1, 30)
        assert cmd not in COMMANDS
        args = self.r.choice([{}, {"key": "frames_demo"}, {"n": "two"}, None])
        return Case(self.dump(self.request(cmd, args, rid)), rid, "unknown_command", "unknown command")

    def envelope_extra(self, role: str) -> Case:
        rid = self.new_id()
        cmd = self.r.choice(["ping", "state", "list_runs", "trials", "annotate"])
        extra = self.r.choice([{"extra": 1}, {"ID": 1}, {"token": "test-token-123456"}, {"role": "controller"},
                               {"seq": 1}, {"": None}, {"Cmd": "run"}, {"args2": {}}])
        return Case(self.dump(self.request(cmd, dict(VALID_BASE.get(cmd, {})), rid, **extra)), rid,
                    "invalid_message", "unknown envelope field")

    def bad_version(self, role: str) -> Case:
        rid = self.new_id()
        message = self.request("ping", None, rid)
        version = self.r.choice(["missing", 0, 2, -1, "1", 1.0, True, None, [], {}, 2**80, 1e308])
        if version == "missing":
            message.pop("v")
        else:
            message["v"] = version
        return Case(self.dump(message), rid, "invalid_message", f"version {version!r}")

    def bad_type(self, role: str) -> Case:
        message = self.request("ping", None, self.new_id())
        kind = self.r.choice(["missing", "Request", "reply", "event", "hello", "welcome", "", 1, None, [], {},
                              "request\x00", "REQUEST"])
        if kind == "missing":
            message.pop("type")
        else:
            message["type"] = kind
        return Case(self.dump(message), None, "invalid_message", f"type {kind!r}")

    def bad_id(self, role: str) -> Case:
        message = self.request(self.r.choice(["ping", "state", "annotate", "run", "stop"]), None, None)
        rid = self.r.choice(["missing", None, 1.5, 1.0, True, False, [], [1], {}, {"id": 1}, "x" * 65,
                             "\u00e9" * 65, 2**63, -(2**63) - 1, 2**80, 1e308, _Raw('"\\ud800"'),
                             _Raw("9" * 4000)])
        if rid == "missing":
            message.pop("id")
        else:
            message["id"] = rid
        return Case(self.dump(message), None, "invalid_message", f"unreadable id {str(rid)[:40]!r}")

    def bad_cmd(self, role: str) -> Case:
        rid = self.new_id()
        message = self.request("ping", None, rid)
        cmd = self.r.choice(["missing", None, 1, True, [], ["ping"], {}, {"cmd": "ping"}, 1.5])
        if cmd == "missing":
            message.pop("cmd")
        else:
            message["cmd"] = cmd
        return Case(self.dump(message), rid, "invalid_message", f"cmd {cmd!r}")

    def auth_again(self, role: str) -> Case:
        message = self.r.choice([
            {"v": 1, "type": "auth", "token": "test-token-123456"},
            {"v": 1, "type": "auth", "token": "test-token-123456", "role": "controller", "since": 0},
            {"v": 1, "type": "auth", "token": "wrong"},
            {"v": 1, "type": "auth", "token": 123},
            {"v": 1, "type": "auth", "role": "admin"},
            {"v": 1, "type": "auth", "since": -1},
            {"v": 1, "type": "auth", "extra": True},
            {"v": 1, "type": "auth", "id": 5, "cmd": "ping"},
        ])
        return Case(self.dump(message), None, "invalid_message", "auth after auth")

    def duplicate_id(self, role: str) -> Case:
        first, second = self.new_id(), self.new_id()
        text = '{"v":1,"type":"request","id":%s,"id":%s,"cmd":"ping","args":{}}' % (
            json.dumps(first), json.dumps(second))
        return Case(text, second, OK, "duplicate id key (the last one counts)")

    def huge_ids(self, role: str) -> Case:
        """Ids at the 64-bit edges are readable and echoed exactly."""
        self.counter += 1
        rid = self.r.choice([-(2**63) + self.counter, 2**63 - 1 - self.counter])
        text = '{"v":1,"type":"request","id":%d,"cmd":"ping"}' % rid
        return Case(text, rid, OK, "64-bit edge id")

    # --- JSON-level --------------------------------------------------------------------------
    def not_json(self, role: str) -> Case:
        if self.r.random() < 0.6:
            text = self.r.choice(NOT_JSON)
        else:  # "{~..." is never JSON
            text = "{~" + self.text(0, 80)
        assert json_outcome(text) == "invalid_json", text
        return Case(text, None, "invalid_json", "not JSON")

    def not_object(self, role: str) -> Case:
        text = self.r.choice(NOT_OBJECT)
        if self.r.random() < 0.3:
            text = json.dumps([self.request("ping", None, self.new_id())])  # a request inside an array
        assert json_outcome(text) == "invalid_message", text
        return Case(text, None, "invalid_message", "JSON but not an object")

    def deep(self, role: str) -> Case:
        """Deep nesting as a bare value: 10,000 nested lists or objects, or just over the limit."""
        depth = self.r.choice([33, 100, 900, 10_000, 10_000])
        if self.r.random() < 0.5:
            text = "[" * depth + "]" * depth
        else:
            text = '{"a":' * depth + "1" + "}" * depth
        return Case(text, None, "invalid_message", f"nested {depth} deep")

    def deep_request(self, role: str) -> Case:
        """A request whose args nest too deeply: id echoed while the JSON can be read."""
        rid = self.new_id()
        depth = self.r.choice([40, 200, 10_000])
        inner = "[" * depth + "]" * depth
        text = '{"v":1,"type":"request","id":%s,"cmd":"add_data","args":{"name":"x","value":%s}}' % (
            json.dumps(rid), inner)
        # 10,000 levels cannot even be parsed (recursion), so the id cannot be read.
        return Case(text, rid if depth < 900 else None, "invalid_message", f"request nested {depth} deep")

    def value_depth(self, role: str) -> Case:
        """add_data values at the depth limits: 31 levels in all is too deep for any message."""
        rid = self.new_id()
        depth = self.r.choice([8, 9, 30, 31])
        message = {"v": 1, "type": "request", "id": rid, "cmd": "add_data",
                   "args": {"name": "deep", "value": nested_list(depth)}}
        expect = {8: "conflict", 9: "invalid_args", 30: "invalid_args", 31: "invalid_message"}[depth]
        if depth == 8 and role == "observer":
            expect = "forbidden"
        return Case(self.dump(message), rid, expect, f"add_data value {depth} deep")

    # --- binary frames ------------------------------------------------------------------------
    def invalid_utf8(self, role: str) -> Case:
        good = json.dumps(self.request("ping", None, self.new_id())).encode()
        bad = self.r.choice([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                             b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80"])
        where = self.r.choice(["front", "inside", "end", "alone"])
        if where == "front":
            frame = bad + good
        elif where == "end":
            frame = good + bad
        elif where == "alone":
            frame = bad * self.r.randint(1, 50)
        else:  # inside the id string or cmd
            cut = good.index(b'"cmd"') + 7
            frame = good[:cut] + bad + good[cut:]
        return Case(frame, None, "invalid_message", "invalid UTF-8 (binary)")

    def random_binary(self, role: str) -> Case:
        frame = bytes(self.r.getrandbits(8) for _ in range(self.r.randint(0, 300)))
        outcome = json_outcome(frame)
        assert outcome is not None, frame  # a random JSON object is not going to happen
        return Case(frame, None, outcome, "random binary")

    def binary_request(self, role: str) -> Case:
        """Binary frames holding UTF-8 JSON are read exactly like text frames."""
        case = self.r.choice([self.valid_command, self.bad_field, self.unknown_command, self.bad_version])(role)
        frame = case.frame.encode("utf-8") if isinstance(case.frame, str) else case.frame
        return Case(frame, case.rid, case.expect, "binary " + case.kind)

    def padded(self, role: str) -> Case:
        """Large but under max_message_bytes: whitespace padding, or a 700 KB unknown field."""
        rid = self.new_id()
        if self.r.random() < 0.5:
            text = '{"v":1,"type":"request","id":%s,"cmd":"ping",%s"args":{}}' % (
                json.dumps(rid), " " * self.r.randint(100_000, 900_000))
            return Case(text, rid, OK, "whitespace-padded ping")
        text = json.dumps(self.request("ping", None, rid, pad="\u00e9" * 350_000), ensure_ascii=False)
        return Case(text, rid, "invalid_message", "700 KB unknown field")

    # --- driver ---------------------------------------------------------------------------------
    def case(self, role: str) -> Case:
        pick = self.r.random() * self.cumulative[-1]
        for maker, bound in zip(self.makers, self.cumulative):  # noqa: B007 - the last one is the fallback
            if pick < bound:
                break
        case = maker(role)
        self.made[maker.__name__] += 1
        _never_destructive(case)
        size = len(case.frame if isinstance(case.frame, bytes) else case.frame.encode("utf-8", "surrogatepass"))
        assert size <= MAX_MESSAGE_BYTES, f"test bug: fuzz messages stay under the size limit ({size})"
        return case


def _accumulate(values):
    total = 0
    for value in values:
        total += value
        yield total


OBSERVER_OK = frozenset({"ping", "state", "list_experiments", "get_exp_info", "trials", "subscribe",
                         "unsubscribe", "replay", "list_runs", "get_run"})


def _never_destructive(case: Case) -> None:
    """Guard for the generator itself: no state-changing command may be valid."""
    try:
        message = parse_client_message(case.frame)
    except ProtocolError:
        return
    cmd = getattr(message, "cmd", None)
    assert cmd not in DESTRUCTIVE, f"generator produced a valid {cmd!r}: {case.describe()}"


def exchange(session, name: str, cases: list[Case], answered: set, counts: collections.Counter) -> None:
    """Send ``cases`` pipelined, then read until each has exactly one reply."""
    for case in cases:
        session.ws.send(case.frame)
    pending: dict[Any, Case] = {}
    null_expected = collections.Counter()
    for case in cases:
        if case.rid is None:
            null_expected[case.expect] += 1
        else:
            key = json.dumps(case.rid)
            assert key not in pending and key not in answered, f"test bug: id reused {case.rid!r}"
            pending[key] = case
    null_seen: collections.Counter = collections.Counter()
    null_total = sum(null_expected.values())
    deadline = time.monotonic() + CHUNK_TIMEOUT
    while pending or sum(null_seen.values()) < null_total:
        try:
            frame = session.ws.recv(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            missing = [c.describe() for c in list(pending.values())[:5]]
            pytest.fail(f"no reply within {CHUNK_TIMEOUT} s for {len(pending)} requests (e.g. {missing}) and "
                        f"for {dict(null_expected - null_seen)} of the unreadable messages (null id)")
        for message in as_messages(frame):
            if message.get("type") == "event":
                counts[f"{name}:{message['event']}"] += 1
                continue
            assert message.get("type") == "reply", f"unexpected message {message}"
            outcome = check_reply(message)
            counts[f"outcome:{outcome}"] += 1
            if message["id"] is None:
                null_seen[outcome] += 1
                assert null_seen[outcome] <= null_expected[outcome], (
                    f"unexpected {outcome!r} reply with a null id: {message}; expected null-id replies "
                    f"{dict(null_expected)}, got so far {dict(null_seen)}")
                continue
            key = json.dumps(message["id"])
            assert key not in answered, f"a second reply for id {message['id']!r}: {message}"
            case = pending.pop(key, None)
            assert case is not None, f"reply with an id nobody sent: {message}"
            answered.add(key)
            assert outcome == case.expect, (
                f"{case.describe()}\nexpected {case.expect!r}, got {message}")
            if outcome == OK and case.kind.endswith("valid annotate"):
                counts["annotate_ok"] += 1
    assert null_seen == null_expected


def drain_events(session, name: str, counts: collections.Counter, until, timeout: float) -> None:
    """Read events (no replies may come) until ``until()`` or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until() and (left := deadline - time.monotonic()) > 0:
        try:
            frame = session.ws.recv(left)
        except TimeoutError:
            break
        for message in as_messages(frame):
            assert message.get("type") == "event", f"an extra reply: {message}"
            counts[f"{name}:{message['event']}"] += 1


def session_view(client: Client) -> dict[str, Any]:
    """What the fuzzing must not change."""
    state = client.state()
    return {
        "status": state["status"],
        "window": state.get("window"),
        # `problems` are inspected lazily between runs (null, then a list): that is not the fuzzing's doing
        "experiments": sorted(json.dumps(e.model_dump(exclude={"problems"}), sort_keys=True)
                              for e in client.list_experiments()),
        "exp_info": client.get_exp_info(),
        "runs": [r["run_id"] for r in client.list_runs(1000)],
    }


def test_fuzzed_messages_each_get_exactly_one_typed_reply(server):
    with Client(server.url, server.token) as client:
        before = session_view(client)
    assert before["status"] == "idle", before
    gen = Generator(SEED)
    answered: set = set()
    counts = collections.Counter()
    started = time.monotonic()
    with raw_session(server.url, server.token, "controller", max_queue=None) as controller, \
            raw_session(server.url, server.token, "observer", max_queue=None) as observer:
        sessions = {"controller": controller, "observer": observer}
        sent = 0
        chunk_index = 0
        while sent < N_MESSAGES:
            role = "observer" if chunk_index % OBSERVER_EVERY == OBSERVER_EVERY - 1 else "controller"
            cases = [gen.case(role) for _ in range(min(CHUNK, N_MESSAGES - sent))]
            exchange(sessions[role], role, cases, answered, counts)
            sent += len(cases)
            chunk_index += 1
        elapsed = time.monotonic() - started
        for name, session in sessions.items():
            final = Case(json.dumps({"v": 1, "type": "request", "id": f"final-{name}", "cmd": "ping"}),
                         f"final-{name}", OK, "final ping")
            exchange(session, name, [final], answered, counts)
            # Every accepted annotation reaches both connections (each subscribed to everything) ...
            drain_events(session, name, counts, lambda name=name: counts[f"{name}:annotation"] >= counts["annotate_ok"], 15)
        for name, session in sessions.items():
            # ... once, and no reply comes after the last one expected.
            drain_events(session, name, counts, lambda: False, 0.5)
            assert counts[f"{name}:annotation"] == counts["annotate_ok"], (name, counts)
            # The connection stayed open all along (a close would also have raised on recv).
            assert session.ws.close_code is None
    # The run covered what it claims: every kind of message, every outcome it can provoke.
    assert sent == N_MESSAGES and len(answered) > N_MESSAGES // 2
    assert set(gen.made) == {maker.__name__ for maker in gen.makers}
    assert min(gen.made.values()) >= 30, gen.made
    outcomes = {key.split(":", 1)[1]: n for key, n in counts.items() if key.startswith("outcome:")}
    for outcome in ("ok", "invalid_json", "invalid_message", "unknown_command", "invalid_args", "forbidden",
                    "conflict", "not_found"):
        assert outcomes.get(outcome, 0) >= 30, outcomes
    assert counts["annotate_ok"] > 10

    with Client(server.url, server.token) as client:
        assert client.ping()["pong"] is True
        after = session_view(client)
        assert after == before, "fuzzing changed the session"
        run = client.run("frames_demo", {"participant": "after-fuzz", "n_trials": 2, "frames_per_trial": 2})
        end = run.wait(timeout=60)
        assert end.event == "run_finished" and end.data["outcome"] == "completed", end
        assert end.data["rows"] == 2 and len(run.rows) == 2
    print(f"fuzz: {sent} messages in {elapsed:.1f} s; outcomes {outcomes}; kinds {dict(gen.made)}")


def test_trials_while_idle_leaves_no_unretrieved_worker_error(server, caplog):
    """Found by the fuzzing: `trials` with no run active must fail cleanly.

    `trials` asks the worker for the current and the future trials at once; when
    the first answer is `conflict` the second (also a failure) must still be
    consumed, not left behind as an un-awaited coroutine whose error nobody
    retrieves (asyncio logs "Future exception was never retrieved").
    """
    caplog.set_level(logging.ERROR, logger="asyncio")
    with raw_session(server.url, server.token, "observer") as session:
        for index in range(5):
            reply = session.request("trials", f"idle-trials-{index}", n=2)
            assert reply["ok"] is False and reply["error"]["code"] == "conflict", reply
        time.sleep(0.5)  # the worker's second answer arrives
        gc.collect()
        assert session.request("ping", "after-idle-trials")["ok"] is True
    leaked = [record.getMessage() for record in caplog.records
              if "never retrieved" in record.getMessage()]
    assert not leaked, f"{len(leaked)} worker errors left unretrieved by `trials`: {leaked[0]}"
