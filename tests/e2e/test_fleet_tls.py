"""The fleet and a booth served over TLS: the pinned certificate is followed, a wrong pin is refused and shown.

One real ``liaison serve --tls`` booth on loopback (its self-signed certificate
and fingerprint, as in the field), one real ``liaison fleet`` process whose
config lists that booth three times: pinned with the right fingerprint,
trusting its certificate as a CA file, and pinned with a wrong fingerprint.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time

import pytest
import websockets
from conftest import liaison_command, make_root, start_serve, stop_serve
from pgcluster import free_port, wait_for

BOOTH_TOKEN = "tls-booth-token-0123456789"
FLEET_TOKEN = "tls-fleet-token-0123456789"
WRONG = "SHA256:" + ":".join(["AB"] * 32)


@pytest.fixture(scope="module")
def tls_fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("fleet-tls")
    root, data = make_root(base, fixtures=False), base / "data"
    booth, banner = start_serve(root, data, "--tls", "--token", BOOTH_TOKEN)
    url, fingerprint = banner["WebSocket"], banner["TLS"]
    assert url.startswith("wss://")
    port = free_port()
    config = base / "fleet.toml"
    config.write_text(
        f'[fleet]\nport = {port}\ntoken = "{FLEET_TOKEN}"\n\n'
        f'[[booth]]\nname = "pinned"\nurl = "{url}"\ntoken = "{BOOTH_TOKEN}"\nfingerprint = "{fingerprint}"\n\n'
        f'[[booth]]\nname = "ca"\nurl = "{url}"\ntoken = "{BOOTH_TOKEN}"\nca_file = "{data / "tls" / "cert.pem"}"\n\n'
        f'[[booth]]\nname = "wrong"\nurl = "{url}"\ntoken = "{BOOTH_TOKEN}"\nfingerprint = "{WRONG}"\n')
    fleet = subprocess.Popen([*liaison_command(), "fleet", str(config)], stdout=subprocess.PIPE,
                             stderr=open(base / "fleet.log", "w"), text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (fleet.stdout.readline() or "").startswith("Press Ctrl+C"):
        if fleet.poll() is not None:
            raise AssertionError(f"liaison fleet did not start:\n{(base / 'fleet.log').read_text()}")
    try:
        yield {"port": port, "fingerprint": fingerprint, "store": base / "fleet.sqlite"}
    finally:
        stop_serve(fleet)
        stop_serve(booth)


def fleet_view(port: int, request: dict | None = None) -> dict:
    """The fleet dashboard's welcome (tiles and alerts), and the reply to ``request`` if one is given."""

    async def talk() -> dict:
        async with websockets.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": FLEET_TOKEN}))
            view = json.loads(await ws.recv())
            if request is not None:
                await ws.send(json.dumps({"type": "request", "id": 1, **request}))
                while (message := json.loads(await asyncio.wait_for(ws.recv(), 90)))["type"] != "reply":
                    pass
                view["reply"] = message
            return view

    return asyncio.run(talk())


def tiles(view: dict) -> dict[str, dict]:
    return {tile["name"]: tile for tile in view["booths"]}


def test_the_fleet_follows_a_pinned_booth_and_refuses_a_wrong_pin_with_a_clear_error(tls_fleet):
    port = tls_fleet["port"]

    def settled():
        view = fleet_view(port)
        found = tiles(view)
        ready = found["pinned"]["contact"] == "connected" and found["ca"]["contact"] == "connected" \
            and found["wrong"]["error"]
        return view if ready else None

    view = wait_for(settled, 60, "the pinned booths connected and the wrong pin refused", interval=0.5)
    wrong = tiles(view)["wrong"]
    assert wrong["contact"] == "no contact"
    assert "not the pinned" in wrong["error"] and WRONG in wrong["error"] and tls_fleet["fingerprint"] in wrong["error"]
    alerts = [a for a in view["alerts"] if a["booth"] == "wrong"]
    assert [a["kind"] for a in alerts] == ["tls"] and "not the pinned" in alerts[0]["message"]  # once, not per retry
    assert not [a for a in view["alerts"] if a["booth"] in ("pinned", "ca")]

    # The pinned link carries a run's rows into the store; the wrong one carried nothing.
    reply = fleet_view(port, {"cmd": "start", "args": {"key": "rt_demo", "booths": [
        {"name": "pinned", "participant": "tls-p1"}]}})["reply"]
    assert reply["ok"] and reply["result"]["pinned"]["ok"], reply

    def stored(booth: str, sql: str = "SELECT COUNT(*) FROM data_rows WHERE booth = ?") -> int:
        with sqlite3.connect(tls_fleet["store"]) as conn:
            return conn.execute(sql, (booth,)).fetchone()[0]

    wait_for(lambda: stored("pinned", "SELECT COUNT(*) FROM runs WHERE booth = ? AND status = 'finished'") == 1,
             120, "the run over TLS finished in the store")
    assert stored("pinned") == 10 and stored("ca") == 10  # both links follow the same booth
    assert stored("wrong", "SELECT COUNT(*) FROM events WHERE booth = ?") == 0
