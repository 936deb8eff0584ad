"""A raw protocol client for tests that need to send exactly the bytes they choose."""

from __future__ import annotations

import json

from websockets.sync.client import connect


class Raw:
    def __init__(self, url: str, token: str | None, role: str = "controller", since=None, **options) -> None:
        self.ws = connect(url, max_size=None, **options)
        self.hello = self.recv()
        self.ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role, "since": since}))
        self.welcome = self.recv()

    def recv(self, timeout: float = 30.0):
        return json.loads(self.ws.recv(timeout))

    def messages(self, timeout: float = 30.0):
        """Next frame as a list of messages (servers batch events in arrays)."""
        data = self.recv(timeout)
        return data if isinstance(data, list) else [data]

    def reply_to(self, request_id, timeout: float = 30.0):
        """Read until the reply with ``request_id`` (events in between are skipped)."""
        while True:
            for message in self.messages(timeout):
                if message.get("type") == "reply" and message.get("id") == request_id:
                    return message

    def request(self, cmd, request_id=1, **args):
        self.ws.send(json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args}))
        return self.reply_to(request_id)

    def close(self) -> None:
        self.ws.close()
