"""Many booths, for real: three `liaison serve` booths, a `liaison fleet` process, PostgreSQL, Chromium.

The booths run the rt_demo experiment in real (virtual-display) windows; the
fleet service is a real process following them over loopback and writing into
a real PostgreSQL cluster of this test session. Crashes are real ``kill -9``s.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import websockets
from conftest import liaison_command, make_root, start_serve, stop_serve
from pgcluster import free_port, wait_for

from liaison.store.journal import Journal

FLEET_TOKEN = "fleet-token-0123456789"
OBSERVER_TOKEN = "fleet-observer-token-0123"
BOOTHS = ("booth-a", "booth-b", "booth-c")


class Booth:
    """A booth: a `liaison serve` process on a fixed port (so it can be restarted at the same URL)."""

    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.root = make_root(base / name, fixtures=False)
        self.data = base / name / "data"
        self.port = free_port()
        self.token = f"{name}-token-0123456789"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.process, _ = start_serve(self.root, self.data, "--port", str(self.port), "--token", self.token)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def journal_events(self) -> dict[int, dict]:
        """Every event this booth journalled, by seq, as the booth would send it."""
        journal = Journal.in_dir(self.data, readonly=True)
        try:
            return {seq: json.loads(text) for seq, _, text in journal.event_texts(0)}
        finally:
            journal.close()

    def session_id(self) -> str:
        journal = Journal.in_dir(self.data, readonly=True)
        try:
            return journal.get_state("session_id")
        finally:
            journal.close()


class Fleet:
    """`liaison fleet CONFIG --store URL` as a real process."""

    def __init__(self, base: Path, booths: list[Booth], store: str | None) -> None:
        self.config = base / "fleet.toml"
        self.port = free_port()
        lines = [f'[fleet]\nport = {self.port}\ntoken = "{FLEET_TOKEN}"\nobserver_token = "{OBSERVER_TOKEN}"\n'
                 'silent_after = 10\n']
        for booth in booths:
            lines.append(f'[[booth]]\nname = "{booth.name}"\nurl = "{booth.url}"\ntoken = "{booth.token}"\n')
        self.config.write_text("\n".join(lines))
        self.store = store
        self.process: subprocess.Popen | None = None
        self.log = base / "fleet.log"

    def start(self) -> None:
        store = ["--store", self.store] if self.store else []  # none: the SQLite file beside the config
        self.process = subprocess.Popen(
            [*liaison_command(), "fleet", str(self.config), *store],
            stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("Press Ctrl+C"):
                return
        self.process.kill()
        raise AssertionError(f"liaison fleet did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    @property
    def page(self) -> str:
        return f"http://127.0.0.1:{self.port}/#token={FLEET_TOKEN}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, postgres):
    """Three booths, the fleet service, and a PostgreSQL database of their own."""
    base = tmp_path_factory.mktemp("fleet")
    database = f"fleet_{os.getpid()}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    booths = [Booth(base, name) for name in BOOTHS]
    for booth in booths:
        booth.start()
    fleet = Fleet(base, booths, url)
    fleet.start()
    yield {"booths": {b.name: b for b in booths}, "fleet": fleet, "url": url}
    for process in [fleet.process, *(b.process for b in booths)]:
        if process is not None and process.poll() is None:
            stop_serve(process)


def pg(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def fleet_request(fleet: Fleet, cmd: str, args: dict, token: str = FLEET_TOKEN, role: str = "controller"
                        ) -> dict:
    """One request on the fleet's own WebSocket, as the dashboard sends it."""
    async with websockets.connect(f"ws://127.0.0.1:{fleet.port}/", open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "auth", "token": token}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["role"] == role
        await ws.send(json.dumps({"type": "request", "id": 7, "cmd": cmd, "args": args}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 90))
            if message["type"] == "reply":
                assert message["id"] == 7
                return message


def wait_all_connected(fleet: Fleet, timeout: float = 60) -> None:
    async def connected() -> bool:
        async with websockets.connect(f"ws://127.0.0.1:{fleet.port}/", open_timeout=10) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": FLEET_TOKEN}))
            welcome = json.loads(await ws.recv())
            return all(b["contact"] == "connected" for b in welcome["booths"])

    wait_for(lambda: asyncio.run(connected()), timeout, "every booth connected to the fleet", interval=0.5)


def run_ends(url: str, booth: str, run_id: str):
    found = pg(url, "SELECT status, outcome, rows FROM runs WHERE booth = %s AND run_id = %s", booth, run_id)
    return found[0] if found and found[0][0] != "running" else None


def test_the_fleet_refuses_bad_tokens_hosts_and_origins(lab):
    fleet = lab["fleet"]

    async def attempt(headers=None, token=FLEET_TOKEN):
        try:
            async with websockets.connect(f"ws://127.0.0.1:{fleet.port}/", additional_headers=headers or {},
                                          open_timeout=10) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "auth", "token": token}))
                return json.loads(await ws.recv())["type"]
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    assert asyncio.run(attempt()) == "welcome"
    assert asyncio.run(attempt(token="wrong-token-wrong")) == "reply"  # the error reply, then 4001
    assert asyncio.run(attempt({"Origin": "http://evil.example"})) == 403
    assert asyncio.run(attempt({"Host": "evil.example"})) == 400  # a second Host header
    for path, host, status in [("/", "evil.example", 421), ("/", f"127.0.0.1:{fleet.port}", 200),
                               ("/", f"localhost:{fleet.port}", 200), ("/api/stats", "127.0.0.1", 401),
                               ("/../../etc/passwd", "127.0.0.1", 404)]:
        conn = http.client.HTTPConnection("127.0.0.1", fleet.port, timeout=10)
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        assert conn.getresponse().status == status, (path, host)
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", fleet.port, timeout=10)
    conn.request("GET", "/api/stats", headers={"Authorization": f"Bearer {FLEET_TOKEN}"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["booths"] == 3
    reply = asyncio.run(fleet_request(fleet, "start", {"key": "rt_demo", "booths": [{"name": "nope"}]}))
    assert not reply["ok"] and reply["error"]["code"] == "not_found"
    reply = asyncio.run(fleet_request(fleet, "pause", {"booths": []}))
    assert not reply["ok"] and reply["error"]["code"] == "invalid_args"


def test_the_observer_token_watches_everything_and_is_refused_every_action(lab):
    """Over the real WebSocket and HTTP: the observer sees the tiles, reads /api/stats, and commands nothing."""
    from playwright.sync_api import expect, sync_playwright

    fleet, booths = lab["fleet"], lab["booths"]
    wait_all_connected(fleet)
    before = {name: b.journal_events() for name, b in booths.items()}
    for cmd, args in [("pause", {"booths": list(BOOTHS)}), ("stop", {"booths": ["booth-a"]}),
                      ("start", {"key": "rt_demo", "booths": [{"name": "booth-a", "participant": "x"}]})]:
        reply = asyncio.run(fleet_request(fleet, cmd, args, token=OBSERVER_TOKEN, role="observer"))
        assert not reply["ok"] and reply["error"]["code"] == "forbidden", reply
        assert "observer" in reply["error"]["message"]
    # Nothing reached a booth: no command was journalled, no run started.
    assert all(len(booths[n].journal_events()) == len(before[n]) for n in BOOTHS)

    async def ask_for_control() -> tuple:
        async with websockets.connect(f"ws://127.0.0.1:{fleet.port}/", open_timeout=10) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "auth", "token": OBSERVER_TOKEN, "role": "controller"}))
            refusal = json.loads(await ws.recv())
            try:
                await ws.recv()
            except websockets.exceptions.ConnectionClosed as exc:
                return refusal, exc.rcvd.code
            return refusal, None

    refusal, code = asyncio.run(ask_for_control())
    assert code == 4001 and refusal["error"] == {"code": "unauthorized", "message": "this token is for observers only"}
    for token, status in [(OBSERVER_TOKEN, 200), (FLEET_TOKEN, 200), ("wrong-token-0123456", 401)]:
        conn = http.client.HTTPConnection("127.0.0.1", fleet.port, timeout=10)
        conn.request("GET", "/api/stats", headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status == status, token
        conn.close()
    with sync_playwright() as p:  # the page shows the tiles and no actions
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{fleet.port}/#token={OBSERVER_TOKEN}")
        expect(page.locator("article.tile")).to_have_count(3, timeout=20_000)
        expect(page.locator("#conn")).to_have_text("connected (observer: view only)")
        expect(page.locator("#actions")).to_be_hidden()
        expect(page.locator('input[aria-label^="participant for"]')).to_have_count(0)
        browser.close()


def test_the_page_shows_every_booth_and_start_on_all_reaches_each(lab):
    """Chromium: three tiles; select all, one participant each, start: each booth runs and PostgreSQL has it all."""
    from playwright.sync_api import expect, sync_playwright

    fleet, url = lab["fleet"], lab["url"]
    wait_all_connected(fleet)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(fleet.page)
        tiles = page.locator("article.tile")
        expect(tiles).to_have_count(3, timeout=20_000)
        for name in BOOTHS:
            tile = page.locator(f'article[data-booth="{name}"]')
            expect(tile.locator('[data-field="contact"]')).to_have_text("connected", timeout=30_000)
            expect(tile.locator('[data-field="status"]')).to_have_text("idle", timeout=30_000)
        expect(page.locator("#experiment option[value=rt_demo]")).to_have_count(1)
        page.select_option("#experiment", "rt_demo")
        page.check("#select-all")
        for name in BOOTHS:
            page.fill(f'input[aria-label="participant for {name}"]', f"p-{name}")
        page.click("#start")
        expect(page.locator("#action-result")).to_contain_text("start: done on", timeout=90_000)
        for name in BOOTHS:
            tile = page.locator(f'article[data-booth="{name}"]')
            expect(tile.locator('[data-field="participant"]')).to_have_text(f"p-{name}", timeout=30_000)
        runs = wait_for(lambda: (lambda found: found if len(found) == 3 and all(r[2] != "running" for r in found)
                                 else None)(pg(url, "SELECT booth, participant, status, rows, run_id, error FROM runs "
                                                   "WHERE participant LIKE 'p-%%' ORDER BY booth")),
                        90, "the end of three runs in PostgreSQL")
        assert [r[2] for r in runs] == ["finished"] * 3, f"a booth's run did not finish: {runs}"
        for name in BOOTHS:  # the page shows every row of every booth's run
            tile = page.locator(f'article[data-booth="{name}"]')
            expect(tile.locator('[data-field="rows"]')).to_have_text("10", timeout=30_000)
        browser.close()
    assert [(b, p, r) for b, p, _, r, _, _ in runs] == [(n, f"p-{n}", 10) for n in BOOTHS]
    for booth, _, _, _, run_id, _ in runs:
        stored = pg(url, "SELECT row_index, row FROM trial_rows WHERE booth = %s AND run_id = %s "
                         "ORDER BY row_index", booth, run_id)
        journal = Journal.in_dir(lab["booths"][booth].data, readonly=True)
        try:
            journalled = journal.data_rows(run_id)
        finally:
            journal.close()
        assert [i for i, _ in stored] == list(range(10))
        assert [row for _, row in stored] == journalled  # every row, as the booth journalled it


def test_kill_9_of_a_booth_and_of_the_fleet_mid_run_loses_and_repeats_nothing(lab):
    booths, fleet, url = lab["booths"], lab["fleet"], lab["url"]
    wait_all_connected(fleet)
    started = asyncio.run(fleet_request(fleet, "start", {
        "key": "rt_demo", "exp_info": {"n_trials": 40},
        "booths": [{"name": name, "participant": f"crash-{name}"} for name in BOOTHS]}))
    assert started["ok"] and all(r["ok"] for r in started["result"].values()), started
    run_ids = {name: r["result"]["run_id"] for name, r in started["result"].items()}

    def stored_rows(name: str) -> int:
        return pg(url, "SELECT COUNT(*) FROM data_rows WHERE booth = %s AND run_id = %s", name, run_ids[name])[0][0]

    wait_for(lambda: all(stored_rows(n) >= 3 for n in BOOTHS), 60, "rows of every booth in PostgreSQL")
    fleet.kill()  # the fleet dies mid-run: whatever it had not committed is gone from its memory
    at_kill = {n: stored_rows(n) for n in BOOTHS}
    victim = booths["booth-b"]
    victim_journal_rows = lambda: sum(  # noqa: E731
        len(e["data"]["rows"]) for e in victim.journal_events().values()
        if e["event"] == "data_rows" and e["data"]["run_id"] == run_ids["booth-b"])
    wait_for(lambda: victim_journal_rows() >= at_kill["booth-b"] + 3, 60, "booth-b to journal more rows")
    victim.kill()  # and a booth dies mid-run, while the fleet is down
    fleet.start()
    victim.start()  # same data folder, same port: it recovers the interrupted run
    for name in BOOTHS:
        wait_for(lambda name=name: run_ends(url, name, run_ids[name]), 120, f"the end of {name}'s run in PostgreSQL")
    assert run_ends(url, "booth-a", run_ids["booth-a"])[:2] == ("finished", "completed")
    assert run_ends(url, "booth-c", run_ids["booth-c"])[:2] == ("finished", "completed")
    assert run_ends(url, "booth-b", run_ids["booth-b"])[0] in ("recovered", "failed")

    for name, booth in booths.items():
        session_id = booth.session_id()

        def caught_up(booth=booth, name=name, session_id=session_id):
            journalled = booth.journal_events()
            # a data_rows event is stored as its rows (under its seq), every other event in `events`
            stored = pg(url, "SELECT seq FROM events WHERE booth = %s AND session_id = %s UNION ALL "
                             "SELECT DISTINCT seq FROM data_rows WHERE booth = %s AND session_id = %s",
                        name, session_id, name, session_id)
            return (journalled, stored) if {s for (s,) in stored} == set(journalled) else None

        journalled, stored = wait_for(caught_up, 60, f"every event of {name} in PostgreSQL")
        assert len(stored) == len(journalled)  # exactly once: no seq twice
        want_rows = sorted((seq, idx, json.dumps(row, sort_keys=True))
                           for seq, e in journalled.items() if e["event"] == "data_rows"
                           for idx, row in enumerate(e["data"]["rows"]))
        got_rows = sorted((seq, idx, json.dumps(row, sort_keys=True)) for seq, idx, row in pg(
            url, "SELECT seq, idx, row FROM data_rows WHERE booth = %s AND session_id = %s", name, session_id))
        assert got_rows == want_rows
    assert at_kill["booth-a"] < 40 and stored_rows("booth-a") == 40


def test_a_fleet_with_the_default_sqlite_store_rebuilds_everything_from_the_booths(lab, tmp_path):
    """No store configured: fleet.sqlite beside the config; an empty store fills from the booths' journals."""
    import sqlite3

    booths = list(lab["booths"].values())
    second = Fleet(tmp_path, booths, store=None)
    second.start()
    try:
        path = tmp_path / "fleet.sqlite"
        for booth in booths:
            journalled = set(booth.journal_events())

            def stored(booth=booth):
                with sqlite3.connect(path) as conn:
                    return {seq for (seq,) in conn.execute(
                        "SELECT seq FROM events WHERE booth = ? UNION SELECT seq FROM data_rows WHERE booth = ?",
                        (booth.name, booth.name))}

            wait_for(lambda booth=booth, journalled=journalled: journalled <= stored(booth), 60,
                     f"{booth.name}'s journal in {path.name}")
        with sqlite3.connect(path) as conn:
            pg_rows = pg(lab["url"], "SELECT COUNT(*) FROM trial_rows")[0][0]
            assert conn.execute("SELECT COUNT(*) FROM trial_rows").fetchone()[0] == pg_rows > 0
            assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 2
    finally:
        stop_serve(second.process)
