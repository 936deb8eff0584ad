"""Shared pieces of the reliability tests: raw connections, frame parsing, memory.

Everything here talks to the real server over real loopback WebSockets; the
only thing it knows about the server is the protocol (liaison.protocol).
"""

from __future__ import annotations

import json
from typing import Any

from liaison.protocol import ErrorCode, parse_server_message
from rawclient import RAW_OPTIONS, Raw, raw_session

__all__ = ["ERROR_CODES", "RAW_OPTIONS", "Raw", "as_messages", "check_reply", "raw_session", "rss_bytes"]

# The documented error codes (docs/protocol.md "Errors" is generated from this enum).
ERROR_CODES = frozenset(code.value for code in ErrorCode)


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
