"""The central store: every booth's events and data rows, in PostgreSQL or SQLite.

One schema for both engines (PostgreSQL via psycopg 3 when the store is a
``postgresql://`` URL, otherwise an embedded SQLite file), created by
versioned migrations recorded in ``schema_migrations``. Everything is keyed
by ``(booth, session_id, seq)``: a booth's ``session_id`` belongs to its data
folder and its ``seq`` numbers never repeat within it, so writing the same
event twice (a replay after a reconnect, a restart of the fleet service) is a
no-op, and ``booth_sessions.last_seq`` — written in the same transaction as
the events — is where a restarted fleet service asks each booth to resume.

Tables: ``events`` (every event but ``data_rows``), ``data_rows`` (one row
per trial row, its JSON text exactly as the booth sent it; a ``data_rows``
event is stored as its rows, under its own ``seq``), ``runs`` (one per run: what,
who, when, outcome, data files — the run's manifest), ``booth_sessions``
(the resume cursors). The view ``trial_rows`` gives each run's trial rows,
the latest send of each row index, with the booth, experiment and
participant: ``SELECT * FROM trial_rows WHERE experiment = 'rt_demo'``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic_core import to_json

END_STATUS = {"run_finished": "finished", "run_failed": "failed", "run_recovered": "recovered"}
ROW_EVENT = "data_rows"


class StoreError(Exception):
    """The store cannot be opened or written (bad URL, server down, newer schema...)."""


@dataclass(slots=True)
class Ingest:
    """One booth event on its way into the store.

    A ``data_rows`` event's ``data["rows"]`` holds each row's JSON text
    (``bytes``, as the booth sent it: see :mod:`liaison.fleet.client`) or
    the row itself (a dict, encoded here).
    """

    booth: str
    session_id: str
    seq: int
    event: str
    time: float
    data: dict[str, Any]
    size: int = 0  # bytes of JSON it arrived as (bounds the writer's backlog in bytes)


MALFORMED = "malformed_event"  # what a booth event the store cannot take is stored as (kept, not expanded)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def problem_with(event: str, data: dict[str, Any]) -> str | None:
    """Why ``write`` could not store this booth event as its kind (None: it can).

    A booth running our server never sends such an event; one that does (a
    bug, an incompatible version, a hostile host) must not stop the store:
    its event is kept whole as a :data:`MALFORMED` event instead (see
    :func:`set_aside`) and every other booth's rows go on being stored.
    """
    run_id = data.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        return f"run_id is {type(run_id).__name__}, not text"
    if event == ROW_EVENT:
        first, rows = data.get("first_row", 0), data.get("rows")
        if not _is_int(first) or first < 0:
            return f"first_row is {first!r}, not a row number"
        if rows is not None and (not isinstance(rows, list) or not all(map(_is_row, rows))):
            return "rows is not a list of rows (objects)"
        if rows and run_id is None:
            return "rows without a run_id"
    elif event == "run_started":
        if not isinstance(data.get("exp_info") or {}, dict):
            return "exp_info is not an object"
        if not isinstance(data.get("key") or "", str) or not isinstance(data.get("data_dir") or "", str):
            return "key or data_dir is not text"
    elif event in END_STATUS:
        if data.get("rows") is not None and not _is_int(data.get("rows")):
            return f"rows is {data.get('rows')!r}, not a count"
        if not isinstance(data.get("data_files") or [], list):
            return "data_files is not a list"
        for name in ("outcome", "error", "reason"):
            if data.get(name) is not None and not isinstance(data.get(name), str):
                return f"{name} is not text"
    return None


def _is_row(row: Any) -> bool:
    """A row (a dict), or a row's JSON text: an object's (the decoder guarantees the text is JSON)."""
    return row.startswith(b"{") if row.__class__ is bytes else isinstance(row, dict)


def set_aside(item: "Ingest", problem: str) -> "Ingest":
    """``item`` as a :data:`MALFORMED` event: its kind, the problem and its data kept whole in ``events``
    (rows that came as JSON texts are kept as those texts)."""
    return Ingest(item.booth, item.session_id, item.seq, MALFORMED, item.time,
                  {"event": item.event, "problem": problem, "data": item.data}, item.size)


# --- schema ----------------------------------------------------------------------------------
# `{json}` is json in PostgreSQL and TEXT (JSON text) in SQLite; everything else is common SQL.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "booth sessions, events, runs and data rows", [
        """CREATE TABLE booth_sessions (
            booth TEXT NOT NULL,
            session_id TEXT NOT NULL,
            last_seq BIGINT NOT NULL DEFAULT 0,
            first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (booth, session_id))""",
        """CREATE TABLE events (
            booth TEXT NOT NULL,
            session_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            event TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            run_id TEXT,
            data {json} NOT NULL,
            PRIMARY KEY (booth, session_id, seq))""",
        "CREATE INDEX events_run ON events (booth, run_id)",
        """CREATE TABLE runs (
            booth TEXT NOT NULL,
            session_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            experiment TEXT NOT NULL,
            participant TEXT,
            exp_info {json} NOT NULL,
            data_dir TEXT,
            started DOUBLE PRECISION NOT NULL,
            start_seq BIGINT NOT NULL,
            ended DOUBLE PRECISION,
            status TEXT NOT NULL,
            outcome TEXT,
            rows BIGINT,
            data_files {json},
            error TEXT,
            PRIMARY KEY (booth, session_id, run_id))""",
        "CREATE INDEX runs_experiment ON runs (experiment, started)",
        """CREATE TABLE data_rows (
            booth TEXT NOT NULL,
            session_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            idx INTEGER NOT NULL,
            run_id TEXT NOT NULL,
            row_index BIGINT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            row {json} NOT NULL,
            PRIMARY KEY (booth, session_id, seq, idx))""",
        "CREATE INDEX data_rows_run ON data_rows (booth, session_id, run_id, row_index, seq)",
    ]),
    (2, "trial_rows: each run's rows, the latest send of each row index", [
        """CREATE VIEW trial_rows AS
        SELECT booth, experiment, participant, run_id, row_index, time, row, session_id, seq
        FROM (
            SELECT d.booth, r.experiment, r.participant, d.run_id, d.row_index, d.time, d.row,
                   d.session_id, d.seq,
                   ROW_NUMBER() OVER (PARTITION BY d.booth, d.session_id, d.run_id, d.row_index
                                      ORDER BY d.seq DESC, d.idx DESC) AS send
            FROM data_rows d
            JOIN runs r ON r.booth = d.booth AND r.session_id = d.session_id AND r.run_id = d.run_id
        ) latest
        WHERE send = 1""",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def row_text(row: Any) -> bytes:
    """A row's JSON text as the store keeps it (NaN and infinities as null, as a booth sends them)."""
    return to_json(row, inf_nan_mode="null", fallback=str)


def dumps(value: Any) -> str:
    """Compact JSON, keys in their order; NaN and infinities become null (as a booth sends them),
    what JSON cannot hold (a numpy scalar, an object) its text.

    ``pydantic_core.to_json`` is about five times faster than ``json.dumps`` on a trial row, and
    every row the fleet stores goes through here.
    """
    return to_json(value, inf_nan_mode="null", fallback=str).decode()


class Store:
    """Base of both engines: migrations, cursors and idempotent batch writes.

    Not thread-safe: one thread uses a store (the fleet service's writer).
    """

    dialect = "sql"
    json_type = "TEXT"
    copy_lines = False  # events and rows handed to _insert_many as COPY text lines, not tuples
    refusals: tuple[type[Exception], ...] = (sqlite3.DataError, sqlite3.IntegrityError)  # "not this data"

    def __init__(self) -> None:
        self.conn: Any = None

    # --- engine specifics (overridden) ------------------------------------------------------
    def _sql(self, query: str) -> str:
        return query

    def _lock_for_migration(self, cur) -> None:
        pass

    def _insert_many(self, cur, table: str, columns: tuple[str, ...], rows: list[tuple],
                     json_columns: tuple[str, ...] = ()) -> None:
        marks = ", ".join("%s" for _ in columns)
        cur.executemany(self._sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                                  "ON CONFLICT DO NOTHING"), rows)

    # --- schema ---------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations this store lacks, each in its own transaction; returns their versions."""
        applied: list[int] = []
        with self._transaction() as cur:
            self._lock_for_migration(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        for version, description, statements in MIGRATIONS:
            with self._transaction() as cur:
                self._lock_for_migration(cur)
                cur.execute(self._sql("SELECT 1 FROM schema_migrations WHERE version = %s"), (version,))
                if cur.fetchone() is not None:
                    continue
                for statement in statements:
                    cur.execute(statement.replace("{json}", self.json_type))
                cur.execute(self._sql("INSERT INTO schema_migrations (version, description, applied_at) "
                                      "VALUES (%s, %s, %s)"), (version, description, time.time()))
                applied.append(version)
        newest = self.version()
        if newest > SCHEMA_VERSION:
            raise StoreError(f"the store's schema is version {newest}, newer than this Liaison knows "
                             f"({SCHEMA_VERSION}): upgrade Liaison")
        return applied

    def version(self) -> int:
        """The newest schema version applied to this store (0 for none)."""
        with self._transaction() as cur:
            cur.execute("SELECT MAX(version) FROM schema_migrations")
            return cur.fetchone()[0] or 0

    # --- cursors ----------------------------------------------------------------------------------
    def cursors(self, booth: str) -> dict[str, int]:
        """``{session_id: last_seq stored}`` for a booth."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT session_id, last_seq FROM booth_sessions WHERE booth = %s"), (booth,))
            return {session_id: last_seq for session_id, last_seq in cur.fetchall()}

    def latest_session(self, booth: str) -> tuple[str, int] | None:
        """The booth's most recently seen session and its stored ``last_seq``."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT session_id, last_seq FROM booth_sessions WHERE booth = %s "
                                  "ORDER BY last_seen DESC LIMIT 1"), (booth,))
            row = cur.fetchone()
            return (row[0], row[1]) if row else None

    # --- writing -----------------------------------------------------------------------------------
    def write(self, batch: Iterable[Ingest]) -> int:
        """Store a batch in one transaction; events already stored are skipped. Returns rows offered.

        When the engine refuses part of the batch's data (:attr:`refusals`: say PostgreSQL finds a
        row's JSON text invalid), the batch is written event by event and each event it refuses is
        stored as a :data:`MALFORMED` event with the engine's reason: one bad row never stops the store.
        """
        batch = list(batch)
        try:
            return self._write(batch)
        except self.refusals:
            pass
        rows = 0
        for item in batch:
            try:
                rows += self._write([item])
            except self.refusals as exc:
                self._write([set_aside(item, f"the store refused it: {exc}".strip())])
        return rows

    def _write(self, batch: list[Ingest]) -> int:
        events, rows, starts, ends = [], [], [], []
        cursors: dict[tuple[str, str], int] = {}
        # PostgreSQL takes events and rows as COPY text: made here, line by line, from values escaped
        # once per event (a tuple per row formatted later cost twice as much). A row arrives as its
        # JSON text and is stored as that text: only COPY's own escapes are added.
        copy_lines = self.copy_lines
        esc, esc_bytes = _copy_text_value, _copy_bytes_value
        heads: dict[tuple[str, str], bytes] = {}  # a booth session's first two COPY fields, escaped once
        run_fields: dict[Any, bytes] = {}  # a run's COPY field, escaped once
        for item in batch:
            data = item.data
            run_id = data.get("run_id")
            key = (item.booth, item.session_id)
            if item.seq > cursors.get(key, -1):
                cursors[key] = item.seq
            if item.event == ROW_EVENT:  # stored as its rows only (the table keeps its seq)
                first = int(data.get("first_row", 0))
                sent = data.get("rows") or ()
                if copy_lines:
                    head = heads.get(key)
                    if head is None:
                        head = heads[key] = f"{esc(item.booth)}\t{esc(item.session_id)}\t".encode()
                    run = run_fields.get(run_id)
                    if run is None:
                        run = run_fields[run_id] = b"\\N" if run_id is None else esc(str(run_id)).encode()
                    seq, when = int(item.seq), float(item.time)
                    rows.extend([b"%b%d\t%d\t%b\t%d\t%r\t%b\n" % (
                        head, seq, idx, run, first + idx, when,
                        esc_bytes(row if row.__class__ is bytes else row_text(row))) for idx, row in enumerate(sent)])
                else:
                    rows.extend([(item.booth, item.session_id, item.seq, idx, run_id, first + idx, item.time,
                                  row.decode() if row.__class__ is bytes else dumps(row))
                                 for idx, row in enumerate(sent)])
                continue
            if copy_lines:
                run = "\\N" if run_id is None else esc(str(run_id))
                events.append(f"{esc(item.booth)}\t{esc(item.session_id)}\t{int(item.seq)}\t{esc(item.event)}\t"
                              f"{float(item.time)!r}\t{run}\t{esc(dumps(data))}\n".encode())
            else:
                events.append((item.booth, item.session_id, item.seq, item.event, item.time, run_id, dumps(data)))
            if item.event == "run_started":
                exp_info = data.get("exp_info") or {}
                participant = exp_info.get("participant")
                starts.append((item.booth, item.session_id, run_id, data.get("key") or "?",
                               None if participant is None else str(participant), dumps(exp_info),
                               data.get("data_dir"), item.time, item.seq, "running"))
            elif item.event in END_STATUS and run_id:
                ends.append((item.time, END_STATUS[item.event], data.get("outcome"), data.get("rows"),
                             dumps(data.get("data_files") or []), data.get("error") or data.get("reason"),
                             item.booth, item.session_id, run_id))
        if not cursors:
            return 0
        now = time.time()
        with self._transaction() as cur:
            if events:
                self._insert_many(cur, "events", ("booth", "session_id", "seq", "event", "time", "run_id", "data"),
                                  events, ("data",))
            if rows:
                self._insert_many(cur, "data_rows", ("booth", "session_id", "seq", "idx", "run_id", "row_index",
                                                     "time", "row"), rows, ("row",))
            if starts:
                self._insert_many(cur, "runs", ("booth", "session_id", "run_id", "experiment", "participant",
                                                "exp_info", "data_dir", "started", "start_seq", "status"),
                                  starts, ("exp_info",))
            if ends:
                # A replayed end changes nothing: the values are the same ones.
                cur.executemany(self._sql(
                    f"UPDATE runs SET ended = %s, status = %s, outcome = %s, rows = %s, data_files = %s{self._cast()}, "
                    "error = %s WHERE booth = %s AND session_id = %s AND run_id = %s"), ends)
            self._advance_cursors(cur, cursors, now)
        return len(rows)

    _ADVANCE = ("ON CONFLICT (booth, session_id) DO UPDATE SET "
                "last_seq = CASE WHEN booth_sessions.last_seq > excluded.last_seq "
                "THEN booth_sessions.last_seq ELSE excluded.last_seq END, last_seen = excluded.last_seen")

    def _advance_cursors(self, cur, cursors: dict[tuple[str, str], int], now: float) -> None:
        """``booth_sessions.last_seq`` up to what this transaction stores (never back)."""
        cur.executemany(self._sql("INSERT INTO booth_sessions (booth, session_id, last_seq, first_seen, last_seen) "
                                  f"VALUES (%s, %s, %s, %s, %s) {self._ADVANCE}"),
                        [(booth, session_id, seq, now, now) for (booth, session_id), seq in cursors.items()])

    def _cast(self) -> str:
        return ""

    # --- reading (tests, tools) ------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run a read-only query (``%s`` placeholders) and return all its rows."""
        with self._transaction() as cur:
            cur.execute(self._sql(sql), params)
            return cur.fetchall()

    def _transaction(self):
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (the store cannot be used afterwards)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Cursor:
        self.conn.execute("BEGIN IMMEDIATE")
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        self.cur.close()


class SqliteStore(Store):
    """The embedded default: one SQLite file (WAL; a commit is on disk before it returns)."""

    dialect = "sqlite"
    json_type = "TEXT"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed cursor must survive a power cut
        self.conn.execute("PRAGMA busy_timeout=10000")

    def _sql(self, query: str) -> str:
        return query.replace("%s", "?")

    def _transaction(self):
        return _SqliteTransaction(self.conn)


class PostgresStore(Store):
    """PostgreSQL through psycopg 3; bulk rows go through COPY into a staging table."""

    dialect = "postgresql"
    json_type = "JSON"  # kept as sent (key order too); parsing into jsonb halves the ingest rate
    copy_lines = True

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("a PostgreSQL store needs psycopg 3: pip install 'liaison-session[fleet]'") from exc
        self.url = url
        try:
            self.conn = psycopg.connect(url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
        self._staged: set[str] = set()
        self.refusals = (psycopg.errors.DataError, psycopg.errors.IntegrityError)

    def reconnect(self) -> None:
        """A fresh connection after the old one broke (the server restarted, the network dropped)."""
        import psycopg

        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return
        try:
            self.conn = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
        self._staged = set()

    def _lock_for_migration(self, cur) -> None:
        # Two fleet services starting together must not both run a migration.
        cur.execute("SELECT pg_advisory_xact_lock(7246001)")

    def _cast(self) -> str:
        return "::json"

    def _advance_cursors(self, cur, cursors: dict[tuple[str, str], int], now: float) -> None:
        # One statement for every booth in the batch (a fleet's batch holds hundreds), not one each.
        booths, sessions, seqs = zip(*((booth, session_id, seq) for (booth, session_id), seq in cursors.items()))
        cur.execute("INSERT INTO booth_sessions (booth, session_id, last_seq, first_seen, last_seen) "
                    "SELECT b, s, q, %s, %s FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS t (b, s, q) "
                    f"{self._ADVANCE}", (now, now, list(booths), list(sessions), list(seqs)))

    def _transaction(self):
        return _PgTransaction(self.conn)

    def _insert_many(self, cur, table: str, columns: tuple[str, ...], rows: list[tuple],
                     json_columns: tuple[str, ...] = ()) -> None:
        stage = f"stage_{table}"
        if stage not in self._staged:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) "
                        "ON COMMIT DELETE ROWS")
            for column in json_columns:
                cur.execute(f"ALTER TABLE {stage} ALTER COLUMN {column} TYPE TEXT")
            self._staged.add(stage)
        names = ", ".join(columns)
        # Formatted once (psycopg's write_row cost three times as much per row); events and rows
        # arrive as lines already.
        text = b"".join(rows) if rows[0].__class__ is bytes else copy_text(rows)
        # Most batches hold nothing stored before: COPY straight into the table. Only when that
        # meets a row already there (a replay) do the rows go through the staging table and skip it.
        import psycopg

        try:
            with self.conn.transaction():  # a savepoint: a duplicate undoes only this attempt
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    copy.write(text)
            return
        except psycopg.errors.UniqueViolation:
            pass
        with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            copy.write(text)
        select = ", ".join(f"{c}::json" if c in json_columns else c for c in columns)
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {select} FROM {stage} ON CONFLICT DO NOTHING")


def _copy_bytes_value(value: bytes) -> bytes:
    # COPY's text escapes on UTF-8 bytes (five times faster than on str: a row's JSON text stays bytes).
    return value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def _copy_text_value(value: str) -> str:
    # COPY's text format: a backslash starts an escape, tab and newline end a field and a row.
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# One lookup by exact type per value (a row has 7 or 8 of them, 20,000 rows a second at full load).
_COPY_FORMAT: dict[type, Callable[[Any], str]] = {
    str: _copy_text_value,
    int: int.__repr__,
    float: float.__repr__,  # shortest round-trip text: the same double in PostgreSQL
    bool: lambda value: "t" if value else "f",
    type(None): lambda value: "\\N",
}


def _copy_value(value: Any) -> str:
    format_ = _COPY_FORMAT.get(value.__class__)
    if format_ is not None:
        return format_(value)
    if isinstance(value, (int, float)):  # subclasses (numpy scalars arrive as text anyway)
        return repr(value)
    return _copy_text_value(str(value))


def copy_text(rows: Iterable[tuple]) -> str:
    """Rows in COPY's text format (tab-separated, ``\\N`` for NULL, escaped text), one line each."""
    get, slow = _COPY_FORMAT.get, _copy_value
    return "".join(["\t".join([(get(v.__class__) or slow)(v) for v in row]) + "\n" for row in rows])


class _PgTransaction:
    def __init__(self, conn) -> None:
        self.conn = conn

    def __enter__(self):
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.cur.close()


def open_store(url: str | Path) -> Store:
    """A migrated store: ``postgresql://...`` (or ``postgres://``), else a SQLite file path."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        store: Store = PostgresStore(text)
    else:
        if text.startswith("sqlite:///"):
            text = text[len("sqlite:///"):]
        store = SqliteStore(text)
    try:
        store.migrate()
    except StoreError:
        store.close()
        raise
    except Exception as exc:  # noqa: BLE001 - any engine error: say which store
        store.close()
        raise StoreError(f"cannot prepare the store {redact(text)}: {exc}") from exc
    return store


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
