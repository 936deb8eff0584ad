"""A client that stops reading is cut off (4008); nobody else notices.

The slow client authenticates and then stops reading, with a tiny socket
receive buffer so the server's writes back up quickly. A fast client makes
the session publish a few thousand 5-9 KB annotation events (no run active).
The server must disconnect the slow client with close code 4008 (after a
``goodbye``), deliver every event to the fast client, and keep its memory
bounded (the server runs in this process, in a thread).
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from liaison.protocol import CloseCode
from reliability_helpers import RAW_OPTIONS, as_messages, raw_session, rss_bytes

pytestmark = pytest.mark.timeout(120)

N_NOTES = 2000
WINDOW = 32  # annotate requests in flight at once
MEMORY_BOUND = 200 * 1024 * 1024


def note(index: int) -> str:
    """Annotation ``index``: 5-9 KB, its index first so the receiver can check it."""
    return f"{index}:" + "y" * (5_000 + (index * 37) % 4_000)


class SlowReader:
    """Authenticates, then reads nothing until told to drain."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
        sock.connect((parts.hostname, parts.port))
        self._cm = connect(url, sock=sock, **{**RAW_OPTIONS, "max_queue": 1})
        self.ws = self._cm.__enter__()
        hello = json.loads(self.ws.recv(20))
        self.ws.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": "observer"}))
        self.welcome = json.loads(self.ws.recv(20))
        assert hello["type"] == "hello" and self.welcome["type"] == "welcome", self.welcome
        self.messages: list[dict[str, Any]] = []
        self.closed: ConnectionClosed | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def start_draining(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        try:
            while True:
                self.messages.extend(as_messages(self.ws.recv(30)))
        except ConnectionClosed as closed:
            self.closed = closed
        except TimeoutError:
            pass

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        try:
            self._cm.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - already closed by the server
            pass

    @property
    def last_event_seq(self) -> int:
        seqs = [m["seq"] for m in self.messages if m.get("type") == "event"]
        return seqs[-1] if seqs else self.welcome["last_seq"]


def flood(server, fast, slow: SlowReader | None) -> tuple[list[int], list[int]]:
    """Annotate N_NOTES times from ``fast``; start ``slow`` draining once the server has cut it.

    Returns the note indices the fast client received, in order, and their seqs.
    """
    sent = replies = 0
    outstanding: set[int] = set()
    notes: list[int] = []
    seqs: list[int] = []
    cut_seen = slow is None
    deadline = time.monotonic() + 90
    while replies < N_NOTES or len(notes) < N_NOTES:
        assert time.monotonic() < deadline, f"stuck: {sent} sent, {replies} replies, {len(notes)} notes"
        if not cut_seen and slow.welcome["client_id"] not in server.hub.subscribers:
            cut_seen = True
            slow.start_draining()  # read now, well within the server's close timeout
        if sent < N_NOTES and sent - replies < WINDOW:
            fast.send_json({"v": 1, "type": "request", "id": sent, "cmd": "annotate", "args": {"text": note(sent)}})
            outstanding.add(sent)
            sent += 1
            continue
        for message in as_messages(fast.ws.recv(30)):
            if message["type"] == "reply":
                assert message["ok"] is True and message["id"] in outstanding, message
                outstanding.remove(message["id"])
                replies += 1
            elif message["type"] == "event" and message["event"] == "annotation":
                index = message["data"]["text"].partition(":")[0]
                assert message["data"]["text"] == note(int(index)), "annotation text changed"
                notes.append(int(index))
                seqs.append(message["seq"])
            else:
                assert message["type"] == "event", f"the fast client got {message}"
    if not cut_seen:
        slow.start_draining()
    return notes, seqs


def test_slow_reader_is_cut_with_4008_and_the_fast_client_gets_every_event(server):
    gc.collect()
    rss_before = rss_bytes()
    slow = SlowReader(server.url, server.token)
    try:
        with raw_session(server.url, server.token, "controller", max_queue=None) as fast:
            started = time.monotonic()
            notes, seqs = flood(server, fast, slow)
            elapsed = time.monotonic() - started
            assert notes == list(range(N_NOTES)), "the fast client missed or reordered events"
            assert seqs == list(range(seqs[0], seqs[0] + N_NOTES)), "gaps in the fast client's stream"
            assert fast.request("ping", "still-there")["ok"] is True
        slow.wait(30)
        assert slow.closed is not None, "the slow client was never disconnected"
        assert slow.closed.rcvd is not None, f"no close frame from the server: {slow.closed!r}"
        assert slow.closed.rcvd.code == CloseCode.SLOW_CONSUMER == 4008, slow.closed
        goodbyes = [m for m in slow.messages if m.get("type") == "goodbye"]
        assert goodbyes and goodbyes[-1]["code"] == 4008, slow.messages[-3:]
        # What it did get was a gapless prefix of the stream.
        got = [m["seq"] for m in slow.messages if m.get("type") == "event"]
        assert got == list(range(slow.welcome["last_seq"] + 1, slow.welcome["last_seq"] + 1 + len(got)))
        assert len(got) < N_NOTES
        # The server no longer holds anything for it, and no outbox is over its limit.
        assert slow.welcome["client_id"] not in server.hub.subscribers
        limit = server.config.client_queue_limit
        assert all(len(s.outbox) <= limit for s in list(server.hub.subscribers.values()))
    finally:
        slow.close()
    gc.collect()
    growth = rss_bytes() - rss_before
    print(f"{N_NOTES} notes in {elapsed:.1f} s; slow client got {len(got)} events; RSS growth {growth >> 20} MB")
    assert growth < MEMORY_BOUND, f"memory grew by {growth >> 20} MB"


def test_cut_slow_reader_reconnects_with_since_and_knows_exactly_what_it_lacks(server):
    """The recovery for 4008: reconnect with ``since`` (docs/protocol.md, close codes).

    The cut client missed at least ``client_queue_limit`` events (its queue was
    dropped). Reconnecting with the seq of the last event it processed must be
    accepted (not cut again at once), and what follows must account for every
    event after ``since``: replayed events in order, possibly preceded by one
    ``gap`` notice naming exactly the range that is not replayed, then live
    events. Nothing may be silently missing and nothing may come twice.
    """
    slow = SlowReader(server.url, server.token)
    try:
        with raw_session(server.url, server.token, "controller", max_queue=None) as fast:
            notes, seqs = flood(server, fast, slow)
            assert notes == list(range(N_NOTES))
            last_seq = seqs[-1]
        slow.wait(30)
        assert slow.closed is not None and slow.closed.rcvd is not None and slow.closed.rcvd.code == 4008
    finally:
        slow.close()
    since = slow.last_event_seq
    missed = last_seq - since
    assert missed >= server.config.client_queue_limit
    with connect(server.url, **RAW_OPTIONS) as ws:
        assert json.loads(ws.recv(20))["type"] == "hello"
        ws.send(json.dumps({"v": 1, "type": "auth", "token": server.token, "role": "observer", "since": since}))
        welcome = json.loads(ws.recv(20))
        assert welcome["type"] == "welcome", (
            f"reconnecting with since={since} ({missed} events missed) was answered with {welcome}")
        assert welcome["replay"] in ("full", "gap"), welcome
        covered: list[int] = []
        gaps = []
        while not covered or covered[-1] < last_seq:
            for message in as_messages(ws.recv(20)):
                if message["type"] == "gap":
                    assert not covered and not gaps, f"a gap notice after events: {message}"
                    gaps.append(message)
                    covered += list(range(message["from_seq"], message["to_seq"] + 1))
                else:
                    assert message["type"] == "event", message
                    covered.append(message["seq"])
        assert (welcome["replay"] == "gap") == bool(gaps), (welcome["replay"], gaps)
        # Gap range + replayed events tile since+1..last_seq exactly: no hole, no repeat.
        assert covered == list(range(since + 1, last_seq + 1)), (gaps, covered[:3], covered[-3:])
        assert ws.close_code is None
        print(f"reconnect with since={since}: {welcome['replay']}, gap {gaps and (gaps[0]['from_seq'], gaps[0]['to_seq'])}")
