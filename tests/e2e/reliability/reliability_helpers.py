"""Shared pieces of the reliability tests: raw connections, frame parsing, memory.

Everything here talks to the real server over real loopback WebSockets; the
only thing it knows about the server is the protocol (liaison.protocol).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

from websockets.sync.client import connect

from liaison.protocol import ErrorCode, parse_server_message

# The documented error codes (docs/protocol.md "Errors" is generated from this enum).
ERROR_CODES = frozenset(code.value for code in ErrorCode)

# Options for every raw test connection: loopback only, no proxy, no compression
# (the server has none), no client-side limit on what the server may send.
RAW_OPTIONS: dict[str, Any] = {"proxy": None, "compression": None, "max_size": None, "open_timeout": 20}


class RawSession:
    """An authenticated raw connection: ``hello`` and ``welcome`` already read."""

    def __init__(self, ws, hello: dict[str, Any], welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.welcome = welcome

    def messages(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next frame as a list of messages (the server batches events in arrays)."""
        return as_messages(self.ws.recv(timeout))

    def send_json(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def request(self, cmd: str, request_id: Any, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request and return its reply; events read meanwhile are dropped."""
        self.send_json({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args})
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(max(0.01, deadline - time.monotonic())):
                if message.get("type") == "reply":
                    assert message.get("id") == request_id, f"reply to something else: {message}"
                    return message


@contextmanager
def raw_session(url: str, token: str | None, role: str = "controller", since: int | None = None,
                **options: Any) -> Iterator[RawSession]:
    """Connect, read ``hello``, authenticate and read ``welcome``; close on exit."""
    with connect(url, **{**RAW_OPTIONS, **options}) as ws:
        hello = json.loads(ws.recv(20))
        assert hello["type"] == "hello", hello
        ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": since}))
        welcome = json.loads(ws.recv(20))
        assert welcome["type"] == "welcome", welcome
        yield RawSession(ws, hello, welcome)


def as_messages(raw: str | bytes) -> list[dict[str, Any]]:
    data = json.loads(raw)
    return data if isinstance(data, list) else [data]


def check_reply(message: dict[str, Any]) -> str:
    """Validate a reply's shape; return ``"ok"`` or its error code."""
    parse_server_message(json.dumps(message))  # the protocol's own model of a reply
    assert message["type"] == "reply" and message["v"] == 1, message
    assert isinstance(message["ok"], bool), message
    if message["ok"]:
        assert message.get("error") is None, message
        return "ok"
    error = message["error"]
    assert error["code"] in ERROR_CODES, f"undocumented error code: {message}"
    assert isinstance(error["message"], str) and error["message"], message
    return error["code"]


def rss_bytes() -> int:
    """Resident memory of this process (the server runs in it, in a thread)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
