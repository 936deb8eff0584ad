"""The session journal: every event, data row and command, on disk before anyone hears of it.

SQLite in WAL mode (one file, ``DATA/journal.sqlite``): appends are
sequential, a batch of events is one transaction, readers never block the
writer, and a torn write at the end of the log is detected by SQLite's own
frame checksums and discarded on open, keeping every complete transaction.
``synchronous=NORMAL`` survives the death of any process (a ``kill -9`` of the
worker or the server); ``durable=True`` (``synchronous=FULL``) also survives
power loss, at the cost of an fsync per batch.

The supervising process writes it (the server's event loop, in batches),
never the experiment's process, so the frame loop does not wait on disk.
Events are stored as the exact JSON text clients receive, which makes replay
from disk a plain read.
"""

from __future__ import annotations

import json
import re
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from session.events import Event

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = 1
END_TYPES = ("run_finished", "run_failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    type TEXT NOT NULL,
    topic TEXT NOT NULL,
    run_id TEXT,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    started REAL,
    ended REAL,
    data_dir TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER,
    exp_info TEXT,
    error TEXT,
    data_files TEXT
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    client_id TEXT,
    client_name TEXT,
    role TEXT,
    cmd TEXT NOT NULL,
    args TEXT,
    request_id TEXT
);
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


# Event records as the journal stores them (the wire JSON, whose first fields come in this order):
# enough of each to say which events, and which rows, a damaged log took with it.
_EVENT_HEAD = re.compile(rb'"type":"event","seq":(\d+),"event":"([a-z_]+)"')
_ROWS_HEAD = re.compile(rb'"seq":(\d+),"event":"data_rows","time":[-0-9.eE+]+,"data":\{"run_id":"([^"]*)",'
                        rb'"key":"[^"]*","first_row":(\d+)')


@dataclass
class Damage:
    """What opening the journal found wrong with it (empty when healthy).

    ``torn_end``: the damage was a last write cut short (a crash); otherwise a
    frame in the middle of the log was corrupt and SQLite dropped it with
    every frame after it. ``lost_events`` (seq -> type) and ``lost_rows``
    (run id -> first and last ``first_row`` of its lost ``data_rows``) are
    what those frames held that the opened journal no longer has.
    """

    wal_bytes_discarded: int = 0
    wal_frames_discarded: int = 0
    problems: list[str] = field(default_factory=list)
    torn_end: bool = True
    lost_events: dict[int, str] = field(default_factory=dict)
    lost_rows: dict[str, list[int]] = field(default_factory=dict)
    row_events: list[tuple[int, str, int]] = field(default_factory=list)  # (seq, run id, first_row) found

    def __bool__(self) -> bool:
        return bool(self.wal_bytes_discarded or self.wal_frames_discarded or self.problems)

    def forget_kept(self, last_seq: int) -> None:
        """Drop what the opened journal still holds (pages are rewritten: old copies of kept events)."""
        self.lost_events = {seq: kind for seq, kind in self.lost_events.items() if seq > last_seq}
        spans: dict[str, list[int]] = {}
        for seq, run, first in self.row_events:
            if seq > last_seq:
                span = spans.setdefault(run, [first, first])
                span[0], span[1] = min(span[0], first), max(span[1], first)
        self.lost_rows = spans

    def describe(self) -> str:
        """One human sentence of what was discarded or found broken, or ``no damage``."""
        parts = []
        if self.wal_frames_discarded or self.wal_bytes_discarded:
            where = ("an incomplete write at the end of the journal was discarded" if self.torn_end else
                     "a corrupt frame in the middle of the journal's log was discarded with every frame after it")
            parts.append(f"{where} ({self.wal_frames_discarded} log frames, {self.wal_bytes_discarded} bytes); "
                         "every complete transaction before it was kept")
            if self.lost_events:
                seqs = sorted(self.lost_events)
                rows = sum(1 for kind in self.lost_events.values() if kind == "data_rows")
                parts.append(f"lost: {len(seqs)} events (seq {seqs[0]}..{seqs[-1]}), {rows} of them data_rows")
            for run, (first, last) in sorted(self.lost_rows.items()):
                parts.append(f"run {run} lost at least {last - first + 1} data rows, from row {first} on "
                             "(PsychoPy's own CSV in its folder may still hold them)")
        parts.extend(self.problems)
        return "; ".join(parts) or "no damage"


def check_wal(wal_path: Path) -> Damage:
    """Find the valid prefix of a SQLite WAL file the way SQLite does (salts and checksums).

    SQLite silently drops frames after the last valid commit; this says how
    much it drops so recovery can report it.
    """
    damage = Damage()
    try:
        data = wal_path.read_bytes()
    except OSError:
        return damage
    if len(data) < 32:
        damage.wal_bytes_discarded = len(data)
        return damage
    magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in (0x377F0682, 0x377F0683):
        damage.problems.append("the journal's write-ahead log has a bad header")
        return damage
    big_endian = magic & 1
    fmt = ">" if big_endian else "<"

    def checksum(chunk: bytes, s1: int, s2: int) -> tuple[int, int]:
        words = struct.unpack(f"{fmt}{len(chunk) // 4}I", chunk)
        for i in range(0, len(words), 2):
            s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
            s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
        return s1, s2

    s1, s2 = checksum(data[:24], 0, 0)
    if (s1, s2) != (c1, c2):
        damage.problems.append("the journal's write-ahead log header checksum is wrong")
        return damage
    frame_size = 24 + page_size
    offset = valid_end = 32
    uncommitted = 0
    examined_end = None
    while True:
        if offset + frame_size > len(data):
            if offset < len(data):  # half a frame: the write was torn
                examined_end = len(data)
                uncommitted += 1
            break
        header = data[offset:offset + 24]
        _page, commit, fs1, fs2, fc1, fc2 = struct.unpack(">6I", header)
        if (fs1, fs2) != (salt1, salt2):
            break  # frames of an earlier, checkpointed generation: not damage
        s1, s2 = checksum(header[:8], s1, s2)
        s1, s2 = checksum(data[offset + 24:offset + frame_size], s1, s2)
        if (s1, s2) != (fc1, fc2):  # a current frame written only in part, or corrupted
            uncommitted += 1
            offset += frame_size
            damage.torn_end = offset + frame_size > len(data)  # the last frame: a torn write
            while offset + frame_size <= len(data):  # SQLite drops every later frame of this log too
                _page, _commit, gs1, gs2, _c1, _c2 = struct.unpack(">6I", data[offset:offset + 24])
                if (gs1, gs2) != (salt1, salt2):
                    break
                uncommitted += 1
                offset += frame_size
            examined_end = offset
            break
        uncommitted += 1
        offset += frame_size
        if commit:
            valid_end, uncommitted = offset, 0
    damage.wal_frames_discarded = uncommitted
    damage.wal_bytes_discarded = (examined_end or offset) - valid_end
    _find_lost(data[valid_end:examined_end or offset], damage)
    return damage


def _find_lost(region: bytes, damage: Damage) -> None:
    """The events (and data rows) whose records lie in the discarded part of the log."""
    for match in _EVENT_HEAD.finditer(region):
        damage.lost_events[int(match.group(1))] = match.group(2).decode()
    damage.row_events = [(int(m.group(1)), m.group(2).decode(errors="replace"), int(m.group(3)))
                         for m in _ROWS_HEAD.finditer(region)]
    damage.forget_kept(0)


MAX_COMMAND_ARGS = 4096  # bytes of a command's args kept in the audit trail


def command_row(*, client_id: str | None, client_name: str | None, role: str | None, cmd: str,
                args: dict[str, Any] | None, request_id: Any = None, refused: str | None = None) -> tuple:
    """A command as the journal stores it, stamped now.

    The audit trail says who asked for what, not what they sent: a refused
    command keeps only why it was refused, and args longer than
    ``MAX_COMMAND_ARGS`` keep their size and a preview (the values that ran
    are in the events), so no client can make the journal grow by sending
    big payloads.
    """
    if refused is not None:
        text = json.dumps({"refused": refused})
    else:
        text = json.dumps(args or {}, default=str)
        if len(text) > MAX_COMMAND_ARGS:
            text = json.dumps({"clipped_bytes": len(text.encode("utf-8", "replace")), "preview": text[:200]})
    return (time.time(), client_id, (client_name or "")[:100] or None, role, cmd, text,
            None if request_id is None else str(request_id)[:64])


def _rollback(db: sqlite3.Connection) -> None:
    """Undo a failed transaction; SQLite may have undone it already (a full disk), which is fine.

    The caller re-raises the original error, so it is never masked by "no transaction is active".
    """
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


class Journal:
    """Append-only store of a session's events, runs and commands; thread-safe.

    With ``background_checkpoints`` commits never copy the write-ahead log into
    the database; a thread of its own does, every ``checkpoint_interval`` s.
    """

    def __init__(self, path: str | Path, *, durable: bool = False, readonly: bool = False,
                 background_checkpoints: bool = False, checkpoint_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.damage = Damage()
        self._lock = threading.Lock()
        wal = self.path.with_name(self.path.name + "-wal")
        unclean = wal.exists()  # a previous process died without closing: see what survives
        if unclean:
            self.damage = check_wal(wal)
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            if background_checkpoints:  # the writer (an event loop) never copies the log into the file
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.executescript(SCHEMA)
            if self.get_state("schema_version") is None:
                self.set_state("schema_version", SCHEMA_VERSION)
        if unclean:
            try:
                problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall() if r[0] != "ok"]
            except sqlite3.DatabaseError as exc:
                problems = [str(exc)]
            self.damage.problems.extend(f"integrity: {p}" for p in problems)
            self.damage.forget_kept(self.last_seq)  # what the log lost that the journal does not hold
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        if background_checkpoints and not readonly:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(checkpoint_interval,),
                                                  name="journal-checkpoint", daemon=True)
            self._checkpointer.start()

    @classmethod
    def in_dir(cls, data_dir: str | Path, **options: Any) -> "Journal":
        """The journal at ``data_dir/journal.sqlite``, with the same ``options`` as the constructor."""
        return cls(Path(data_dir) / JOURNAL_FILE, **options)

    def _checkpoint_loop(self, interval: float) -> None:
        """Copy the write-ahead log into the database every ``interval`` s, from a connection of its own.

        A PASSIVE checkpoint never blocks the writer, so appends stay a log
        write; without this, SQLite checkpoints inside a commit every ~4 MB.
        """
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while not self._closing.wait(interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass
        finally:
            db.close()

    def close(self) -> None:
        """Stop the checkpoint thread (up to 5 s) and close the database; the journal is unusable after."""
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # --- writing ------------------------------------------------------------------------
    def append(self, batch: Iterable[tuple[Event, str, str]]) -> None:
        """Store ``(event, topic, wire_text)`` items in one transaction, in order."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for event, topic, text in batch:
                    run_id = getattr(event, "run_id", None)
                    db.execute("INSERT INTO events (seq, time, type, topic, run_id, text) VALUES (?,?,?,?,?,?)",
                               (event.seq, event.time, event.type, topic, run_id, text))
                    if run_id is not None:
                        self._track_run(db, event, run_id)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    @staticmethod
    def _track_run(db: sqlite3.Connection, event: Event, run_id: str) -> None:
        kind = event.type
        if kind == "run_started":
            db.execute(
                "INSERT OR REPLACE INTO runs (run_id, key, status, started, data_dir, first_seq, exp_info) "
                "VALUES (?,?,?,?,?,?,?)",
                (run_id, event.key, "running", event.time, event.data_dir, event.seq,
                 json.dumps(event.exp_info, default=str)),
            )
        elif kind == "data_rows":
            db.execute("UPDATE runs SET rows = MAX(rows, ?) WHERE run_id = ?",
                       (event.first_row + len(event.rows), run_id))
        elif kind in ("run_paused", "run_resumed", "run_stopping"):
            status = {"run_paused": "paused", "run_resumed": "running", "run_stopping": "stopping"}[kind]
            db.execute("UPDATE runs SET status = ? WHERE run_id = ? AND status != 'ended'", (status, run_id))
        elif kind in END_TYPES:
            db.execute(
                "UPDATE runs SET status='ended', outcome=?, ended=?, last_seq=?, rows=MAX(rows, ?), error=?, "
                "data_files=? WHERE run_id=?",
                (getattr(event, "outcome", "failed"), event.time, event.seq, event.rows,
                 getattr(event, "error", None), json.dumps(list(event.data_files)), run_id),
            )
            if getattr(event, "exp_info", None):  # the expInfo the run ended with (keys it added)
                db.execute("UPDATE runs SET exp_info=? WHERE run_id=?",
                           (json.dumps(event.exp_info, default=str), run_id))
        elif kind == "run_recovered":
            db.execute("UPDATE runs SET data_files=? WHERE run_id=?", (json.dumps(list(event.data_files)), run_id))

    def record_command(self, *, client_id: str | None, client_name: str | None, role: str | None, cmd: str,
                       args: dict[str, Any] | None, request_id: Any = None, refused: str | None = None) -> None:
        """Store one command (see :func:`command_row`)."""
        self.record_commands([command_row(client_id=client_id, client_name=client_name, role=role, cmd=cmd,
                                          args=args, request_id=request_id, refused=refused)])

    def record_commands(self, rows: list[tuple]) -> None:
        """Store rows made by :func:`command_row`, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO commands (time, client_id, client_name, role, cmd, args, request_id) "
                    "VALUES (?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                _rollback(self._db)
                raise

    def set_state(self, name: str, value: Any) -> None:
        """Store ``value`` (as JSON, ``str`` for what JSON cannot take) under ``name``, replacing any earlier one."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
                             (name, json.dumps(value, default=str)))

    # --- reading ----------------------------------------------------------------------------
    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def get_state(self, name: str, default: Any = None) -> Any:
        """The value stored under ``name`` by :meth:`set_state`, or ``default``."""
        row = self._one("SELECT value FROM state WHERE name = ?", (name,))
        return json.loads(row[0]) if row else default

    @property
    def last_seq(self) -> int:
        """The newest journalled event's ``seq``, 0 when there is none."""
        return self._one("SELECT MAX(seq) FROM events")[0] or 0

    @property
    def first_seq(self) -> int:
        """The oldest journalled event's ``seq``, 0 when there is none."""
        return self._one("SELECT MIN(seq) FROM events")[0] or 0

    def count_events(self, after: int, before: int) -> int:
        """How many journalled events have ``after < seq < before``."""
        return self._one("SELECT COUNT(*) FROM events WHERE seq > ? AND seq < ?", (after, before))[0]

    def event_texts(self, after: int, before: int | None = None, topics: set[str] | None = None,
                    limit: int | None = None) -> list[tuple[int, str, str]]:
        """``(seq, topic, text)`` of events with ``after < seq < before``, in order."""
        query = "SELECT seq, topic, text FROM events WHERE seq > ?"
        params: list[Any] = [after]
        if before is not None:
            query += " AND seq < ?"
            params.append(before)
        if topics and "all" not in topics:
            query += f" AND topic IN ({','.join('?' * len(topics))})"
            params.extend(sorted(topics))
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return self._query(query, params)

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """Every journalled event of a run, decoded, in order."""
        run = self._one("SELECT first_seq, last_seq FROM runs WHERE run_id = ?", (run_id,))
        if run is None:
            return []
        first, last = run
        rows = self._query(
            "SELECT text FROM events WHERE seq >= ? AND (? IS NULL OR seq <= ?) AND run_id = ? ORDER BY seq",
            (first, last, last, run_id),
        )
        return [json.loads(text) for (text,) in rows]

    def data_rows(self, run_id: str) -> list[dict[str, Any]]:
        """The run's data rows as journalled, by row index (a later send of a row wins)."""
        by_index: dict[int, dict[str, Any]] = {}
        for event in self.run_events(run_id):
            if event.get("event") == "data_rows":
                data = event["data"]
                for offset, row in enumerate(data["rows"]):
                    by_index[data["first_row"] + offset] = row
        return [by_index[i] for i in sorted(by_index)]

    RUN_COLUMNS = ("run_id, key, status, outcome, started, ended, data_dir, rows, first_seq, last_seq, "
                   "exp_info, error, data_files")

    @staticmethod
    def _run_dict(row: tuple) -> dict[str, Any]:
        (run_id, key, status, outcome, started, ended, data_dir, rows, first_seq, last_seq, exp_info,
         error, data_files) = row
        return {
            "run_id": run_id, "key": key, "status": status, "outcome": outcome, "started": started,
            "ended": ended, "data_dir": data_dir, "rows": rows, "first_seq": first_seq, "last_seq": last_seq,
            "exp_info": json.loads(exp_info) if exp_info else {}, "error": error,
            "data_files": json.loads(data_files) if data_files else [],
        }

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        query = f"SELECT {self.RUN_COLUMNS} FROM runs ORDER BY first_seq DESC"
        if limit:
            return [self._run_dict(r) for r in self._query(query + " LIMIT ?", (limit,))]
        return [self._run_dict(r) for r in self._query(query)]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's record (as :meth:`runs` gives them), or None."""
        row = self._one(f"SELECT {self.RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return self._run_dict(row) if row else None

    def unfinished_runs(self) -> list[dict[str, Any]]:
        """Runs with no journalled end (the worker or server died under them), oldest first."""
        rows = self._query(f"SELECT {self.RUN_COLUMNS} FROM runs WHERE status != 'ended' ORDER BY first_seq")
        return [self._run_dict(r) for r in rows]

    def commands(self, limit: int = 100) -> list[dict[str, Any]]:
        """The ``limit`` most recent commands, newest first, with their arguments decoded."""
        rows = self._query(
            "SELECT time, client_id, client_name, role, cmd, args, request_id FROM commands ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [{"time": t, "client_id": c, "client_name": n, "role": r, "cmd": cmd,
                 "args": json.loads(a) if a else {}, "request_id": rid} for t, c, n, r, cmd, a, rid in rows]
