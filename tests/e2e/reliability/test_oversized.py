"""Oversized messages: `too_large` below the frame limit, close 1009 above it.

``hello.max_message_bytes`` (1 MiB by default) is the largest message the
server parses: a bigger one gets a `too_large` error (id null, never parsed)
and the connection carries on. The WebSocket layer refuses frames over its
own max_size (4 x max_message_bytes) by closing the connection with 1009
(message too big); that costs only the offending connection.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from reliability_helpers import RAW_OPTIONS, as_messages, check_reply, raw_session

pytestmark = pytest.mark.timeout(120)

PREFIX = '{"v":1,"type":"request","id":"%s","cmd":"ping","args":{}'


def padded_ping(request_id: str, size: int) -> str:
    """A valid ping of exactly ``size`` UTF-8 bytes (JSON whitespace as padding)."""
    head = PREFIX % request_id
    return head + " " * (size - len(head) - 1) + "}"


def reply(session, timeout: float = 30.0) -> dict:
    """The next reply (events skipped), shape-checked."""
    while True:
        for message in session.messages(timeout):
            if message.get("type") == "reply":
                check_reply(message)
                return message


def test_message_over_max_message_bytes_gets_too_large_and_the_connection_goes_on(server):
    with raw_session(server.url, server.token, "controller", max_queue=None) as session:
        limit = session.hello["max_message_bytes"]
        assert limit == server.config.max_message_bytes == 1 << 20

        # Exactly at the limit: parsed and answered.
        exact = padded_ping("exact", limit)
        assert len(exact.encode()) == limit
        session.ws.send(exact)
        answer = reply(session)
        assert answer["id"] == "exact" and answer["ok"] is True, answer

        # One byte over, text and binary: too_large, never parsed (so no id).
        for frame in (padded_ping("over", limit + 1), padded_ping("over-bin", limit + 1).encode()):
            session.ws.send(frame)
            answer = reply(session)
            assert answer["ok"] is False and answer["error"]["code"] == "too_large", answer
            assert answer["id"] is None, answer
            assert answer["error"]["details"]["max_bytes"] == limit, answer

        # The limit is in UTF-8 bytes, not characters: 2-byte characters.
        head = '{"v":1,"type":"request","id":"utf8-%s","cmd":"ping","pad":"'
        under = head % "under" + "\u00e9" * ((limit - 200) // 2) + '"}'  # under the limit in bytes
        over = head % "over" + "\u00e9" * (limit // 2) + '"}'  # fewer characters than bytes allowed
        assert len(under.encode()) <= limit < len(over.encode()) and len(over) < limit
        session.ws.send(under)
        answer = reply(session)  # parsed: the unknown field "pad" is an envelope error with the id
        assert answer["id"] == "utf8-under" and answer["error"]["code"] == "invalid_message", answer
        session.ws.send(over)
        answer = reply(session)
        assert answer["id"] is None and answer["error"]["code"] == "too_large", answer

        # Just under the WebSocket frame limit (4 x max_message_bytes): too_large, still open.
        frame_limit = 4 * limit
        session.ws.send(padded_ping("near-frame-limit", frame_limit))
        answer = reply(session)
        assert answer["id"] is None and answer["error"]["code"] == "too_large", answer

        # A note longer than annotate allows, in a small message, is an args error.
        session.send_json({"v": 1, "type": "request", "id": "long-note", "cmd": "annotate",
                           "args": {"text": "z" * 10_001}})
        answer = reply(session)
        assert answer["id"] == "long-note" and answer["error"]["code"] == "invalid_args", answer

        # The connection is still fully usable.
        answer = session.request("ping", "after-too-large")
        assert answer["ok"] is True and answer["result"]["pong"] is True
        assert session.ws.close_code is None


def big_frame_closes_with_1009(url: str, token: str, frame) -> ConnectionClosed:
    """Send ``frame`` on a fresh authenticated connection; the close it causes."""
    with raw_session(url, token, "observer", max_queue=None) as session:
        try:
            session.ws.send(frame)  # the server may close while this is still being written
            while True:
                for message in as_messages(session.ws.recv(30)):
                    assert message.get("type") in ("event", "goodbye"), f"an answer to a refused frame: {message}"
        except ConnectionClosed as closed:
            return closed
        except TimeoutError:
            pytest.fail("the server neither answered nor closed the connection")


def test_frame_over_websocket_max_size_closes_with_1009_and_only_that_connection(server):
    with raw_session(server.url, server.token, "observer", max_queue=None) as bystander:
        frame_limit = 4 * bystander.hello["max_message_bytes"]

        # One byte over the frame limit, as text, as binary, and as a fragmented
        # message whose fragments are small but whose total is too big.
        for frame in (padded_ping("too-big", frame_limit + 1),
                      padded_ping("too-big-bin", frame_limit + 1).encode(),
                      iter(["x" * (frame_limit // 8)] * 9)):
            closed = big_frame_closes_with_1009(server.url, server.token, frame)
            assert closed.rcvd is not None, f"no close frame from the server: {closed!r}"
            assert closed.rcvd.code == 1009, closed  # message too big

        # The bystander connected before all this is untouched ...
        answer = bystander.request("ping", "bystander")
        assert answer["ok"] is True and answer["result"]["pong"] is True
        assert bystander.ws.close_code is None

    # ... and new clients are served as usual.
    with raw_session(server.url, server.token, "controller") as fresh:
        assert fresh.request("state", "fresh-state")["ok"] is True
    with connect(server.url, **RAW_OPTIONS) as ws:
        assert json.loads(ws.recv(20))["type"] == "hello"
