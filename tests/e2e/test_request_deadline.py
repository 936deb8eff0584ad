"""Request deadlines (`not_after`) and the `clients` list, over real loopback WebSockets."""

from __future__ import annotations

import json
import time

from rawclient import Raw, open_raw


def send(raw: Raw, request_id, cmd, not_after=None, **args):
    message = {"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args}
    if not_after is not None:
        message["not_after"] = not_after
    raw.ws.send(json.dumps(message))
    return raw.reply_to(request_id)


def test_a_request_past_its_deadline_is_refused_and_not_carried_out(server):
    raw = open_raw(server.url, server.token)
    try:
        late = send(raw, "late", "annotate", not_after=time.time() - 5, text="too late to matter")
        assert late["ok"] is False and late["error"]["code"] == "expired"
        assert "not carried out" in late["error"]["message"]
        in_time = send(raw, "ok", "annotate", not_after=time.time() + 30, text="in time")
        assert in_time["ok"] is True
        # the late one left no trace in the session: only the timely note became an event
        replay = send(raw, "r", "replay", since=0)
        notes = [e["data"]["text"] for e in replay["result"]["events"] if e["event"] == "annotation"]
        assert "in time" in notes and "too late to matter" not in notes
        bad = send(raw, "bad", "ping", not_after="soon")
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_message"
    finally:
        raw.close()


def test_clients_lists_who_is_connected(server):
    controller = open_raw(server.url, server.token)
    observer = open_raw(server.url, server.token, role="observer")
    try:
        refused = send(observer, 1, "clients")
        assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
        reply = send(controller, 1, "clients")
        assert reply["ok"], reply
        people = reply["result"]
        roles = {(p["role"], p["you"]) for p in people}
        assert ("controller", True) in roles and ("observer", False) in roles
        assert all(p["connected_since"] <= time.time() for p in people)
        ids = [p["client_id"] for p in people]
        assert controller.welcome["client_id"] in ids and observer.welcome["client_id"] in ids
    finally:
        controller.close()
        observer.close()
    # gone clients leave the list
    raw = open_raw(server.url, server.token)
    try:
        deadline = time.monotonic() + 10
        while True:
            ids = [p["client_id"] for p in send(raw, 2, "clients")["result"]]
            if controller.welcome["client_id"] not in ids:
                break
            assert time.monotonic() < deadline, "a closed client is still listed"
            time.sleep(0.05)
    finally:
        raw.close()
