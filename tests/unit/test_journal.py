"""The journal on its own: what it stores, how it replays, and what a torn write leaves."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from liaison.protocol import event_json
from liaison.server.hub import Hub, Subscriber
from journal_fixtures import a_run, published
from session.events import Annotated, DataRows, Publisher, RunStarted
from liaison.store.journal import Journal, check_wal
from liaison.store.recovery import recover


def test_events_runs_and_commands_are_stored_and_survive_reopening(tmp_path):
    journal = Journal.in_dir(tmp_path)
    events = published(journal, a_run(rows=3), batch=2)
    journal.record_command(client_id="c1", client_name="cli", role="controller", cmd="run",
                           args={"key": "demo"}, request_id=7)
    journal.set_state("params", {"session": "002"})
    journal.close()

    again = Journal.in_dir(tmp_path)
    assert not again.damage, again.damage.describe()
    assert again.last_seq == events[-1].seq == 5
    texts = again.event_texts(0)
    assert [seq for seq, _, _ in texts] == [1, 2, 3, 4, 5]
    assert json.loads(texts[1][2]) == json.loads(event_json(events[1])), "stored as the wire JSON"
    run = again.run("r1")
    assert run["status"] == "ended" and run["outcome"] == "completed" and run["rows"] == 3
    assert run["data_files"] == ["a.csv"] and run["exp_info"] == {"participant": "p"}
    assert again.data_rows("r1") == [{"i": 0, "rt": 0.5}, {"i": 1, "rt": 1.5}, {"i": 2, "rt": 2.5}]
    assert again.commands()[0] == {"time": pytest.approx(again.commands()[0]["time"]), "client_id": "c1",
                                   "client_name": "cli", "role": "controller", "cmd": "run",
                                   "args": {"key": "demo"}, "request_id": "7"}
    assert again.get_state("params") == {"session": "002"}
    assert again.unfinished_runs() == []


def test_topics_filter_and_range(tmp_path):
    journal = Journal.in_dir(tmp_path)
    published(journal, a_run(rows=2))
    assert [s for s, _, _ in journal.event_texts(0, topics={"runs"})] == [1, 4]
    assert [s for s, _, _ in journal.event_texts(1, 4)] == [2, 3]
    assert [s for s, _, _ in journal.event_texts(0, limit=2)] == [1, 2]


def test_a_torn_write_keeps_every_complete_transaction_and_is_reported(tmp_path):
    live = Journal.in_dir(tmp_path / "live")
    notes = [Annotated(run_id=None, text=f"note {i}") for i in range(200)]
    published(live, notes, batch=10)  # 20 transactions, all still in the write-ahead log
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        shutil.copy(tmp_path / "live" / name, copy / name)
    assert not check_wal(copy / "journal.sqlite-wal"), "an intact log is no damage"
    wal = copy / "journal.sqlite-wal"
    size = wal.stat().st_size
    with open(wal, "r+b") as handle:
        handle.truncate(size - 1500)  # cut the last frame in half: a write torn by a crash

    damaged = Journal(copy / "journal.sqlite")
    assert damaged.damage and "incomplete write" in damaged.damage.describe()
    assert damaged.damage.wal_bytes_discarded > 0
    kept = damaged.event_texts(0)
    assert [seq for seq, _, _ in kept] == list(range(1, 191)), "the torn transaction goes, all before it stay"
    assert [json.loads(t)["data"]["text"] for _, _, t in kept] == [f"note {i}" for i in range(190)]
    published(damaged, [Annotated(run_id=None, text="after")])
    assert damaged.last_seq == 191, "and the journal carries on"
    live.close()


def test_recovery_closes_open_runs_and_rebuilds_their_rows(tmp_path):
    journal = Journal.in_dir(tmp_path)
    run_dir = tmp_path / "runs" / "r2"
    run_dir.mkdir(parents=True)
    published(journal, a_run("r1", rows=1) + a_run("r2", rows=4, end=False, data_dir=str(run_dir)))
    out = []

    def publish(event):
        out.append(published(journal, [event])[0])

    report = recover(journal, publish, reason="test crash", wait=0)
    assert [r["run_id"] for r in report.runs] == ["r2"]
    assert [e.type for e in out] == ["run_finished", "run_recovered"]
    assert out[0].outcome == "aborted" and out[1].rows == 4
    assert journal.run("r2")["outcome"] == "aborted" and journal.unfinished_runs() == []
    csv_text = (run_dir / "demo_recovered.csv").read_text().splitlines()
    assert csv_text == ["i,rt", "0,0.5", "1,1.5", "2,2.5", "3,3.5"]
    assert (run_dir / "STATUS").read_text() == "ABORTED\n"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["recovery"]["reason"] == "test crash" and manifest["recovery"]["rows_from_journal"] == 4
    assert recover(journal, publish, wait=0).runs == [], "recovering twice does nothing more"


def drain_catch_up(hub, subscriber, page=8):
    """What the connection's sender does: read pages until caught up."""
    seqs = []
    while subscriber.catching_up:
        items, subscriber.cursor = hub.page(subscriber.cursor, subscriber.topics, page)
        seqs += [seq for seq, _ in items]
        hub.caught_up(subscriber)
    return seqs


def test_a_reconnecting_client_catches_up_from_memory_and_journal_then_goes_live(tmp_path):
    journal = Journal.in_dir(tmp_path)
    loop = asyncio.new_event_loop()
    try:
        hub = Hub(loop, replay_size=10, journal=journal)
        publisher = Publisher()
        for i in range(50):
            hub.dispatch(publisher.publish(Annotated(run_id=None, text=str(i))))
        assert [s for s, _, _ in hub.replay] == list(range(41, 51)), "memory holds only the newest 10"

        client = Subscriber("a", {"all"}, limit=5, on_overflow=lambda s: None)
        assert hub.subscribe(client, since=25) == ("full", None)
        hub.dispatch(publisher.publish(Annotated(run_id=None, text="during catch-up")))
        assert not client.outbox, "nothing queued while catching up, so no overflow however far behind"
        assert drain_catch_up(hub, client) == list(range(26, 52)), "26..40 from disk, the rest from memory"
        hub.dispatch(publisher.publish(Annotated(run_id=None, text="live")))
        assert [seq for seq, _ in client.take_events(10)] == [52], "then live, with nothing missed or repeated"

        texts, gap, cursor = hub.replay_since(38, {"annotations"}, limit=5)
        assert gap is None and cursor == 43 < hub.last_seq and [json.loads(t)["seq"] for t in texts] == [39, 40, 41, 42, 43]
        assert hub.replay_since(0, {"status"}, limit=100) == ([], None, hub.last_seq), "topic filter"
        # a page is bounded in bytes too: the next page starts where this one stopped
        everything, _, _ = hub.replay_since(38, {"annotations"}, limit=100)
        size = {json.loads(t)["seq"]: len(t) for t in everything}
        texts, _, cursor = hub.replay_since(38, {"annotations"}, limit=100, max_bytes=size[39] + size[40] + size[41])
        assert [json.loads(t)["seq"] for t in texts] == [39, 40, 41] and cursor == 41
        texts, _, cursor = hub.replay_since(cursor, {"annotations"}, limit=100, max_bytes=size[42] + size[43] + size[44])
        assert [json.loads(t)["seq"] for t in texts] == [42, 43, 44] and cursor == 44
    finally:
        loop.close()


def test_without_the_events_anywhere_the_client_is_told_of_the_gap():
    loop = asyncio.new_event_loop()
    try:
        hub = Hub(loop, replay_size=10)  # no journal: only memory
        publisher = Publisher()
        for i in range(50):
            hub.dispatch(publisher.publish(Annotated(run_id=None, text=str(i))))
        client = Subscriber("b", {"all"}, limit=100, on_overflow=lambda s: None)
        assert hub.subscribe(client, since=5) == ("gap", (6, 40))
        assert drain_catch_up(hub, client) == list(range(41, 51))
    finally:
        loop.close()


def test_background_checkpoints_copy_the_log_so_the_writer_never_has_to(tmp_path):
    import time as clock

    # A short interval so the copy shows in milliseconds; the server uses the default (1 s).
    journal = Journal.in_dir(tmp_path, background_checkpoints=True, checkpoint_interval=0.02)
    assert journal._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0, "commits never checkpoint"
    database = tmp_path / "journal.sqlite"
    before = database.stat().st_size
    published(journal, [Annotated(run_id=None, text="x" * 2000) for _ in range(3000)], batch=100)
    deadline = clock.monotonic() + 10
    while clock.monotonic() < deadline and database.stat().st_size < 5_000_000:
        clock.sleep(0.01)
    assert before < 100_000 <= 5_000_000 <= database.stat().st_size, "the log was copied in the background"
    journal.close()
    assert not (tmp_path / "journal.sqlite-wal").exists(), "a clean close leaves no log behind"
    assert Journal.in_dir(tmp_path).last_seq == 3000


def test_the_memory_buffer_is_bounded_by_size_too(tmp_path):
    journal = Journal.in_dir(tmp_path)
    loop = asyncio.new_event_loop()
    try:
        hub = Hub(loop, replay_size=1000, journal=journal, replay_bytes=20_000)
        publisher = Publisher()
        for _ in range(100):
            hub.dispatch(publisher.publish(Annotated(run_id=None, text="x" * 1000)))
        kept = sum(len(text) for _, _, text in hub.replay)
        assert kept <= 20_000 and len(hub.replay) < 25 and hub.replay[-1][0] == 100
        client = Subscriber("a", {"all"}, limit=5, on_overflow=lambda s: None)
        hub.subscribe(client, since=0)
        assert drain_catch_up(hub, client) == list(range(1, 101)), "the rest comes from the journal"
    finally:
        loop.close()


def test_a_corrupt_frame_mid_log_reports_the_events_and_rows_lost_truthfully(tmp_path):
    """A bit flip in the middle of the log once lost ~1,500 rows and was reported as "2 log frames"."""
    live = Journal.in_dir(tmp_path / "live")
    events = [RunStarted(run_id="r1", key="demo", exp_info={}, data_dir="/nowhere")]
    events += [DataRows(run_id="r1", key="demo", first_row=5 * i, rows=[{"i": 5 * i + k, "rt": 0.5} for k in range(5)])
               for i in range(300)]  # 1,500 rows in 300 events
    published(live, events, batch=10)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        shutil.copy(tmp_path / "live" / name, copy / name)
    wal = copy / "journal.sqlite-wal"
    with open(wal, "r+b") as handle:  # flip one bit in the page of a frame a third of the way in
        handle.seek(wal.stat().st_size // 3)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x10]))

    damaged = Journal(copy / "journal.sqlite")
    kept_rows = len(damaged.data_rows("r1"))
    assert 0 < kept_rows < 1500
    damage = damaged.damage
    text = damage.describe()
    assert "middle of the journal's log" in text and damage.wal_frames_discarded > 2
    lost_seqs = sorted(damage.lost_events)
    assert lost_seqs[0] == damaged.last_seq + 1 and lost_seqs[-1] == 301, "every lost event is named"
    first, last = damage.lost_rows["r1"]
    assert first == kept_rows and last == 1495
    assert f"at least {last - first + 1} data rows, from row {kept_rows}" in text
    assert 1500 - kept_rows - 4 <= last - first + 1 <= 1500 - kept_rows, "at least, and within one event of the truth"
    live.close()
    damaged.close()
