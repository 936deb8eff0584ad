"""The one raw protocol client of the tests: it sends exactly the bytes a test chooses.

Everything here talks to a real server over real loopback WebSockets; the
only thing it knows about the server is the protocol's framing.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

from websockets.sync.client import connect

# Options for every raw test connection: loopback only, no proxy, no compression
# (the server has none), no client-side limit on what the server may send.
RAW_OPTIONS: dict[str, Any] = {"proxy": None, "compression": None, "max_size": None, "open_timeout": 20}


class Raw:
    """An authenticated raw connection: ``hello`` and ``welcome`` already read (``welcome`` may be a refusal)."""

    def __init__(self, ws, hello: dict[str, Any], welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.welcome = welcome

    def recv(self, timeout: float = 30.0) -> Any:
        """The next frame, parsed."""
        return json.loads(self.ws.recv(timeout))

    def messages(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next frame as a list of messages (the server batches events in arrays)."""
        data = self.recv(timeout)
        return data if isinstance(data, list) else [data]

    def send_json(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def reply_to(self, request_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Read until the reply with ``request_id``; events in between are dropped, other replies fail the test."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages(max(0.01, deadline - time.monotonic())):
                if message.get("type") == "reply":
                    assert message.get("id") == request_id, f"reply to something else: {message}"
                    return message

    def request(self, cmd: str, request_id: Any = 1, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request and return its reply."""
        self.send_json({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args})
        return self.reply_to(request_id, timeout)

    def close(self) -> None:
        """Close the connection (for connections made with :func:`open_raw`)."""
        self.ws.__exit__(None, None, None)


def open_raw(url: str, token: str | None, role: str = "controller", since: int | None = None,
             **options: Any) -> Raw:
    """Like :func:`raw_session` for tests that close it themselves (``close()`` in a ``finally``)."""
    ws = connect(url, **{**RAW_OPTIONS, **options}).__enter__()
    hello = json.loads(ws.recv(20))
    assert hello["type"] == "hello", hello
    ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": since}))
    return Raw(ws, hello, json.loads(ws.recv(20)))


@contextmanager
def raw_session(url: str, token: str | None, role: str = "controller", since: int | None = None,
                **options: Any) -> Iterator[Raw]:
    """Connect, read ``hello``, authenticate and read ``welcome``; close on exit."""
    with connect(url, **{**RAW_OPTIONS, **options}) as ws:
        hello = json.loads(ws.recv(20))
        assert hello["type"] == "hello", hello
        ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": since}))
        welcome = json.loads(ws.recv(20))
        yield Raw(ws, hello, welcome)
