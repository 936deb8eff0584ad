"""The fleet's pieces that need no socket: config checks, the SQLite store, Host checks, the model."""

from __future__ import annotations

import json

import pytest

from liaison.fleet.config import ConfigError, load_config, parse_config
from liaison.fleet.front import host_allowed
from liaison.fleet.model import FleetModel
from liaison.fleet.store import SCHEMA_VERSION, Ingest, open_store


def a_run(booth="b1", session="s1", first_seq=1, rows=3, run_id="r1", participant="p01"):
    events = [Ingest(booth, session, first_seq, "run_started", 10.0,
                     {"run_id": run_id, "key": "rt_demo", "exp_info": {"participant": participant}, "data_dir": "/d"})]
    for i in range(rows):
        events.append(Ingest(booth, session, first_seq + 1 + i, "data_rows", 11.0 + i,
                             {"run_id": run_id, "key": "rt_demo", "first_row": i, "rows": [{"rt": 0.3 + i}]}))
    events.append(Ingest(booth, session, first_seq + 1 + rows, "run_finished", 20.0,
                         {"run_id": run_id, "key": "rt_demo", "outcome": "completed", "rows": rows,
                          "data_files": ["x.csv"], "duration": 9.0}))
    return events


def test_sqlite_store_is_migrated_once_and_writes_are_idempotent(tmp_path):
    store = open_store(tmp_path / "fleet.sqlite")
    assert store.version() == SCHEMA_VERSION
    events = a_run()
    store.write(events)
    store.write(events[1:3])  # a replay overlapping what is stored
    store.write(events)
    # data_rows events are stored as their rows only; every other event in `events`
    assert store.query("SELECT event FROM events ORDER BY seq") == [("run_started",), ("run_finished",)]
    assert store.query("SELECT COUNT(*) FROM data_rows") == [(3,)]
    rows = store.query("SELECT booth, experiment, participant, row_index, row FROM trial_rows ORDER BY row_index")
    assert [(b, e, p, i, json.loads(r)) for b, e, p, i, r in rows] == [
        ("b1", "rt_demo", "p01", i, {"rt": 0.3 + i}) for i in range(3)]
    assert store.query("SELECT status, outcome, rows FROM runs") == [("finished", "completed", 3)]
    assert store.cursors("b1") == {"s1": len(events)}
    store.close()
    again = open_store(tmp_path / "fleet.sqlite")  # reopening applies nothing twice
    assert again.migrate() == []
    assert again.latest_session("b1") == ("s1", len(events))
    again.close()


def test_a_malformed_booth_event_is_kept_aside_and_never_stops_the_store(tmp_path):
    """A data_rows event the rows table cannot take is stored whole as a malformed_event; the rest goes on."""
    import asyncio

    from liaison.fleet.link import BoothLink
    from liaison.fleet.writer import StoreWriter
    from liaison.protocol.client import Event

    config = parse_config({"booth": [{"name": "b1", "url": "ws://127.0.0.1:1/"}]})
    model = FleetModel(config.booth)
    bad = [Event(2, "data_rows", 1.0, {"run_id": "r", "first_row": "two", "rows": [{"rt": 1}]}),
           Event(3, "data_rows", 1.0, {"run_id": "r", "first_row": 0, "rows": "not rows"}),
           Event(4, "run_finished", 1.0, {"run_id": "r", "rows": "many"})]
    good = Event(5, "data_rows", 1.0, {"run_id": "r", "first_row": 0, "rows": [{"rt": 0.5}]})

    async def scenario():
        from liaison.fleet.client import FleetClient

        writer = StoreWriter(open_store(tmp_path / "fleet.sqlite"), asyncio.get_running_loop())
        link = BoothLink(config.booth[0], model, writer)
        link.client = FleetClient("ws://127.0.0.1:1/", "t", since=0)
        link.session_id = "s1"
        link._outcome = asyncio.get_running_loop().create_future()
        link._take([*bad, good], 400)
        for _ in range(200):
            if writer.events_written == 4 or writer.failing:
                break
            await asyncio.sleep(0.02)
        failing = writer.failing
        await asyncio.get_running_loop().run_in_executor(None, writer.stop)
        return failing

    assert asyncio.run(scenario()) is None, "the store was blocked by a malformed event"
    store = open_store(tmp_path / "fleet.sqlite")
    kept = store.query("SELECT seq, event, data FROM events ORDER BY seq")
    assert [(seq, event) for seq, event, _ in kept] == [(2, "malformed_event"), (3, "malformed_event"),
                                                        (4, "malformed_event")]  # 5 is stored as its row
    first = json.loads(kept[0][2])
    assert first["event"] == "data_rows" and "first_row" in first["problem"] and first["data"]["first_row"] == "two"
    assert [json.loads(r) for (r,) in store.query("SELECT row FROM data_rows")] == [{"rt": 0.5}]
    assert len([a for a in model.alerts if a.kind == "malformed"]) == 3
    store.close()


def test_trial_rows_shows_the_latest_send_of_a_row(tmp_path):
    store = open_store(tmp_path / "fleet.sqlite")
    events = a_run(rows=2)
    resend = Ingest("b1", "s1", 99, "data_rows", 30.0,
                    {"run_id": "r1", "key": "rt_demo", "first_row": 1, "rows": [{"rt": 9.9}]})
    store.write([*events, resend])
    rows = store.query("SELECT row_index, row FROM trial_rows ORDER BY row_index")
    assert [(i, json.loads(r)) for i, r in rows] == [(0, {"rt": 0.3}), (1, {"rt": 9.9})]
    store.close()


def test_the_cursor_never_moves_back(tmp_path):
    store = open_store(tmp_path / "fleet.sqlite")
    events = a_run()
    store.write(events)
    store.write(events[:2])  # an old replay
    assert store.cursors("b1") == {"s1": events[-1].seq}
    store.close()


def test_config_reads_toml_and_names_the_wrong_field(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text('[fleet]\nport = 0\ntoken = "a-long-fleet-token"\n\n'
                    '[[booth]]\nname = "booth-1"\nurl = "ws://127.0.0.1:9001/"\ntoken = "t1"\n\n'
                    '[[booth]]\nname = "booth-2"\nurl = "ws://127.0.0.1:9002/"\nrole = "observer"\n')
    config = load_config(path)
    assert [b.name for b in config.booth] == ["booth-1", "booth-2"]
    assert config.booth[1].dashboard == "http://127.0.0.1:9002/"
    assert config.store_url() == str(tmp_path / "fleet.sqlite")
    with pytest.raises(ConfigError, match=r"booth\[1\]\.url"):
        parse_config({"booth": [{"name": "a", "url": "ws://h/"}, {"name": "b", "url": "http://h/"}]})
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_config({"booth": [{"name": "a", "url": "ws://h/"}, {"name": "a", "url": "ws://g/"}]})
    with pytest.raises(ConfigError, match="only allowed when the fleet listens on loopback"):
        parse_config({"fleet": {"host": "0.0.0.0", "no_auth": True}, "booth": [{"name": "a", "url": "ws://h/"}]})
    with pytest.raises(ConfigError, match="booth"):
        parse_config({"fleet": {}})
    with pytest.raises(ConfigError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("[fleet\n")
        load_config(tmp_path / "bad.toml")


def test_host_header_checks_defeat_dns_rebinding():
    assert host_allowed("127.0.0.1:8800", "127.0.0.1", [])
    assert host_allowed("localhost:8800", "127.0.0.1", [])
    assert host_allowed("[::1]:8800", "::1", [])
    assert not host_allowed("evil.example:8800", "127.0.0.1", [])
    assert not host_allowed(None, "127.0.0.1", [])
    assert host_allowed("fleet.lab:8800", "127.0.0.1", ["fleet.lab"])
    assert not host_allowed("evil.example", "0.0.0.0", ["fleet.lab"])
    assert host_allowed("10.0.0.5:8800", "0.0.0.0", [])


def test_model_raises_silent_and_stalled_alerts_once():
    config = parse_config({"booth": [{"name": "a", "url": "ws://h/"}]})
    model = FleetModel(config.booth, silent_after=5, stall_after=10)
    model.contact("a", "connected")
    model.event("a", "run_started", 1, 100.0, {"run_id": "r", "key": "k", "exp_info": {"participant": "p"}})
    model.event("a", "status", 2, 100.0, {"status": "running"})
    now = model.tiles["a"].last_contact
    model.check(now + 1)
    assert not model.alerts
    model.check(now + 11)
    model.check(now + 12)
    kinds = [a.kind for a in model.alerts]
    assert kinds.count("silent") == 1 and kinds.count("stalled") == 1
    assert model.tiles["a"].contact == "no contact"
    model.event("a", "run_failed", 3, 101.0, {"run_id": "r", "key": "k", "error": "boom", "traceback": ""})
    assert model.alerts[-1].kind == "failed" and "boom" in model.alerts[-1].message


def test_the_fleet_client_forgets_events_once_handed_on():
    """A fleet follows booths for weeks: its client hands each frame's events on and keeps none (AsyncClient does)."""
    from liaison.fleet.client import FleetClient

    client = FleetClient("ws://127.0.0.1:1/", "t", since=0)
    frame = [{"v": 1, "type": "event", "seq": seq, "event": "data_rows", "time": 0.0,
              "data": {"run_id": f"r{seq % 7}", "rows": [{}]}} for seq in range(1, 1001)]
    client._on_frame(json.dumps(frame[:10]))  # before the link is ready: kept for it
    handed: list[list] = []
    client.attach(lambda events, size: handed.append(events))
    client._on_frame(json.dumps(frame[10:]))
    client._on_frame(json.dumps(frame[499]))  # a replayed one: dropped
    assert [len(batch) for batch in handed] == [10, 990]
    assert [e.seq for batch in handed for e in batch] == list(range(1, 1001))
    assert client._run_events == {} and client._early == [] and client.last_seq == 1000


def test_the_fleet_client_says_when_it_could_not_keep_early_events(monkeypatch):
    from liaison.fleet import client as fleet_client

    monkeypatch.setattr(fleet_client, "EARLY_EVENTS", 5)
    client = fleet_client.FleetClient("ws://127.0.0.1:1/", "t", since=0)
    client._on_frame(json.dumps([{"v": 1, "type": "event", "seq": seq, "event": "status", "time": 0.0,
                                  "data": {}} for seq in range(1, 7)]))
    with pytest.raises(fleet_client.BufferOverflow):
        client.attach(lambda events, size: None)
    monkeypatch.setattr(fleet_client, "EARLY_EVENTS", 1000)
    monkeypatch.setattr(fleet_client, "EARLY_BYTES", 100)  # a few events, but too many bytes
    client = fleet_client.FleetClient("ws://127.0.0.1:1/", "t", since=0)
    client._on_frame(json.dumps([{"v": 1, "type": "event", "seq": 1, "event": "status", "time": 0.0,
                                  "data": {"note": "x" * 200}}]))
    with pytest.raises(fleet_client.BufferOverflow, match="MiB"):
        client.attach(lambda events, size: None)


def test_the_fleet_client_refuses_a_frame_that_is_not_json():
    from liaison.fleet.client import FleetClient
    from liaison.protocol import ProtocolError

    client = FleetClient("ws://127.0.0.1:1/", "t", since=0)
    with pytest.raises(ProtocolError, match="invalid JSON"):
        client._on_frame('{"v": 1, "type": "event", "seq": ')


def test_a_link_holds_its_booth_while_the_store_is_behind_and_reads_again_once_it_caught_up(tmp_path, monkeypatch):
    """Backpressure, not reconnects: a full backlog stops reading from the booth until the store caught up."""
    import asyncio

    from liaison.fleet import writer as fleet_writer
    from liaison.fleet.client import FleetClient
    from liaison.fleet.link import BoothLink
    from liaison.protocol.client import Event

    monkeypatch.setattr(fleet_writer, "MAX_BACKLOG", 8)
    config = parse_config({"booth": [{"name": "b1", "url": "ws://127.0.0.1:1/"}]})
    model = FleetModel(config.booth)

    async def scenario():
        store = open_store(tmp_path / "fleet.sqlite")
        writer = fleet_writer.StoreWriter(store, asyncio.get_running_loop())
        link = BoothLink(config.booth[0], model, writer)
        link.client = FleetClient("ws://127.0.0.1:1/", "t", since=0)
        link.session_id = "s1"
        link._outcome = asyncio.get_running_loop().create_future()
        rows = [Event(seq, "data_rows", 1.0, {"run_id": "r", "first_row": seq - 1, "rows": [{"rt": seq}]})
                for seq in range(1, 6)]
        with writer._cond:  # the writer thread is busy: everything stays queued for now
            link._take(rows, 500)
            assert writer.full and not link.client._gate.is_set()  # held
            assert not link._outcome.done()  # the connection stays up
        assert "the store is behind" in model.tiles["b1"].error
        await asyncio.wait_for(link._release, 10)  # the writer caught up...
        assert link.client._gate.is_set() and writer.backlog <= 2  # ...and the booth is read again
        assert model.tiles["b1"].error is None
        for _ in range(200):  # the last commit lands within a few ms
            if store_rows(writer) == 5:
                break
            await asyncio.sleep(0.05)
        assert store_rows(writer) == 5
        await asyncio.get_running_loop().run_in_executor(None, writer.stop)

    def store_rows(writer):
        import sqlite3

        with sqlite3.connect(tmp_path / "fleet.sqlite") as conn:
            return conn.execute("SELECT COUNT(*) FROM data_rows").fetchone()[0]

    asyncio.run(scenario())


def test_the_observer_token_is_refused_every_action_with_a_typed_error():
    import asyncio

    from liaison.fleet.service import FleetService, RequestError

    config = parse_config({"fleet": {"token": "controller-token-0123", "observer_token": "observer-token-0123"},
                           "booth": [{"name": "a", "url": "ws://127.0.0.1:1/"}]})
    service = FleetService(config)
    assert service.role_for({"token": "controller-token-0123"}) == "controller"
    assert service.role_for({"token": "observer-token-0123"}) == "observer"
    assert service.role_for({"token": "observer-token-0123", "role": "controller"}) is None
    assert service.role_for({"token": "controller-token-0123", "role": "observer"}) == "observer"
    assert service.role_for({"token": "wrong-token-0123456"}) is None
    assert service.role_for({}) is None
    for cmd, args in [("pause", {"booths": ["a"]}), ("start", {"key": "k", "booths": [{"name": "a"}]})]:
        with pytest.raises(RequestError) as refused:
            asyncio.run(service.handle(cmd, args, role="observer"))
        assert refused.value.code == "forbidden" and cmd in refused.value.message


def test_the_observer_token_must_be_long_and_different(tmp_path):
    booth = [{"name": "a", "url": "ws://h/"}]
    with pytest.raises(ConfigError, match="must differ from token"):
        parse_config({"fleet": {"token": "same-token-0123", "observer_token": "same-token-0123"}, "booth": booth})
    with pytest.raises(ConfigError, match="at least 12"):
        parse_config({"fleet": {"token": "a-token-0123456", "observer_token": "short"}, "booth": booth})


def test_tls_pins_are_checked_when_the_config_is_read(tmp_path):
    good = "SHA256:" + ":".join(["AB"] * 32)
    config = parse_config({"booth": [{"name": "a", "url": "wss://h/", "fingerprint": good.lower()}]})
    assert config.booth[0].fingerprint == good  # normalised as `liaison serve` prints it
    with pytest.raises(ConfigError, match=r"booth\[0\]\.fingerprint: .*not a SHA-256 fingerprint"):
        parse_config({"booth": [{"name": "a", "url": "wss://h/", "fingerprint": "12:34"}]})
    with pytest.raises(ConfigError, match="for wss:// booths"):
        parse_config({"booth": [{"name": "a", "url": "ws://h/", "fingerprint": good}]})
    with pytest.raises(ConfigError, match=r"booth\[0\]\.ca_file: no CA file"):
        parse_config({"booth": [{"name": "a", "url": "wss://h/", "ca_file": str(tmp_path / "missing.pem")}]})


def test_postgresql_gets_every_awkward_value_exactly_as_sent_once(postgres):
    """The COPY text the store makes by hand: tabs, newlines, backslashes, quotes, NUL-free unicode, NaN."""
    import psycopg

    database = "fleet_copy_text"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    store = open_store(postgres.url.rsplit("/", 1)[0] + f"/{database}")
    odd = "tab\there\nnew line\r\\back\\slash \"quoted\" é ✓ \\N"
    row = {"text": odd, "rt": float("nan"), "big": 2**62, "t": True, "none": None, "nested": {"k": [1, odd]}}
    session = "s\t1\\x"  # a booth may name its session anything
    raw = b'{ "raw" :\t"a\\tb\\\\c\\n" ,\n "u": "\\u00e9 \xc3\xa9", "q": "\\"\\\\N"}'
    events = [Ingest("b1", session, 1, "run_started", 1.5, {"run_id": f"r{odd}", "key": "k", "exp_info": {"participant": odd}}),
              Ingest("b1", session, 2, "data_rows", 2.25, {"run_id": f"r{odd}", "key": "k", "first_row": 0,
                                                            "rows": [row, {"n": 2}]}),
              Ingest("b1", session, 3, "run_finished", 3.0, {"run_id": f"r{odd}", "outcome": "completed", "rows": 2}),
              # a row as the fleet's client hands it on: its JSON text as the booth sent it, spacing and all
              Ingest("b1", session, 4, "data_rows", 4.0, {"run_id": f"r{odd}", "first_row": 2, "rows": [raw]})]
    try:
        store.write(events)
        store.write(events)  # a replay: COPY meets the duplicates and falls back to the staging table
        stored = store.query("SELECT session_id, run_id, row_index, time, row::text FROM data_rows ORDER BY seq, idx")
        assert [r[:4] for r in stored] == [(session, f"r{odd}", 0, 2.25), (session, f"r{odd}", 1, 2.25),
                                           (session, f"r{odd}", 2, 4.0)]
        assert stored[2][4] == raw.decode()  # byte for byte
        assert json.loads(stored[2][4]) == {"raw": "a\tb\\c\n", "u": "é é", "q": '"\\N'}
        assert json.loads(stored[0][4]) == {**row, "rt": None}  # NaN is null, as a booth sends it
        assert store.query("SELECT participant, status FROM runs") == [(odd, "finished")]
        # data_rows events are stored as their rows; the other two in `events`
        assert store.query("SELECT COUNT(*), MAX(seq) FROM events") == [(2, 3)]
        assert store.cursors("b1") == {session: 4}
    finally:
        store.close()


def test_a_row_postgresql_refuses_is_set_aside_and_the_rest_of_its_batch_stored(postgres):
    """A row text PostgreSQL will not take as JSON (or a row without a run) never blocks the writer:
    the batch is written event by event and the refused one is kept as a malformed_event."""
    import psycopg

    database = "fleet_refused_rows"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    store = open_store(postgres.url.rsplit("/", 1)[0] + f"/{database}")
    batch = [Ingest("b1", "s1", 1, "run_started", 1.0, {"run_id": "r", "key": "k", "exp_info": {}}),
             Ingest("b1", "s1", 2, "data_rows", 2.0, {"run_id": "r", "first_row": 0, "rows": [b'{"rt": tru}']}),
             Ingest("b1", "s1", 3, "data_rows", 3.0, {"run_id": "r", "first_row": 1, "rows": [b'{"rt": 0.4}']})]
    try:
        assert store.write(batch) == 1
        assert store.query("SELECT seq, row::text FROM data_rows") == [(3, '{"rt": 0.4}')]
        kept = store.query("SELECT seq, event, data::text FROM events ORDER BY seq")
        assert [(seq, event) for seq, event, _ in kept] == [(1, "run_started"), (2, "malformed_event")]
        aside = json.loads(kept[1][2])
        assert aside["event"] == "data_rows" and "refused" in aside["problem"]
        assert aside["data"]["rows"] == ['{"rt": tru}']  # kept whole, as text
        assert store.cursors("b1") == {"s1": 3}
    finally:
        store.close()
