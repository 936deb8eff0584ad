"""After the server has stopped: what reached the journal, the CSV and the log, and which findings are problems.

Each check reads what the run left on disk (never the live server) and
returns a plain dict for the report; :func:`find_problems` turns all the
counts into sentences, one per problem found.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from .load import CommandLoad
from .peer import Peer
from .server import SERVER_STOP_TIMEOUT
from .stats import r3


def check_journal(path: Path, run_id: str) -> dict[str, Any]:
    """The run's record and its rows as the journal at ``path`` holds them: rows, lost, duplicated, received."""
    result: dict[str, Any] = {}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    try:
        record = con.execute("SELECT status, outcome, rows FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        result["run"] = dict(zip(("status", "outcome", "rows"), record)) if record else None
        expected = lost = duplicated = received = 0
        for (text,) in con.execute("SELECT text FROM events WHERE type = 'data_rows' AND run_id = ? "
                                   "ORDER BY seq", (run_id,)):
            data = json.loads(text)["data"]
            first, n = data["first_row"], len(data["rows"])
            if first > expected:
                lost += first - expected
            elif first < expected:
                duplicated += min(expected, first + n) - first
            expected = max(expected, first + n)
            received += n
        result.update(rows=expected - lost, lost=lost, duplicated=duplicated, received=received)
        result["events"] = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        result["commands"] = con.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    except sqlite3.Error as exc:
        result["error"] = str(exc)
    finally:
        con.close()
    return result


def check_csv(folder: Path) -> dict[str, Any]:
    """Rows, size and columns of the first CSV in the run folder (``error`` when there is none)."""
    files = sorted(folder.glob("*.csv"))
    if not files:
        return {"error": f"no CSV in {folder}", "files": sorted(p.name for p in folder.glob("*"))}
    with open(files[0], newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = sum(1 for _ in reader)
    return {"file": files[0].name, "rows": rows, "bytes": files[0].stat().st_size, "columns": header}


def server_log(stderr: str) -> dict[str, Any]:
    """The server's warnings, errors and tracebacks in ``stderr`` (its log), and the log's tail."""
    lines = [line for line in stderr.splitlines()
             if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line)]
    return {"warning_lines": len(lines), "lines": lines[:50], "stderr_tail": stderr[-4000:]}


def rows_check(run_id: str, controller: Peer | None, observers: list[Peer], rate: float,
               experiment_seconds: float) -> dict[str, Any]:
    """Rows each client got, the count run_finished gives, and how many ``rate`` predicts (with its basis)."""
    ctrl = controller
    started = (ctrl.started.get(run_id) or {}) if ctrl else {}
    stopping = (ctrl.stopping.get(run_id) or {}) if ctrl else {}
    end = (ctrl.ended.get(run_id) or {}) if ctrl else {}
    result: dict[str, Any] = {"per_client": [p.unique_rows(run_id) for p in observers],
                              "controller": ctrl.unique_rows(run_id) if ctrl else None,
                              "run_finished": (end.get("data") or {}).get("rows")}
    if started.get("time") and stopping.get("time"):
        seconds = stopping["time"] - started["time"]
        result["expected"] = int(rate * seconds)
        result["expected_basis"] = f"{rate:g} rows/s x {seconds:.3f} s (run_started -> run_stopping)"
    elif started.get("time") and end.get("data", {}).get("outcome") == "completed":
        result["expected"] = int(rate * experiment_seconds)
        result["expected_basis"] = f"{rate:g} rows/s x {experiment_seconds} s (the run completed)"
    return result


def find_problems(peers: list[Peer], checks: dict[str, Any], run_id: str | None, interrupted: bool,
                  rate: float, load: CommandLoad) -> list[str]:
    """Every finding about the server, as a sentence: lost or repeated rows or events, counts that disagree,
    a pace not kept, failed commands, an unclean exit, processes left behind, warnings in the log.

    ``checks`` holds the results of this module's checks (``rows``, ``journal``,
    ``csv``, ``server_exit``, ``server_log``); ``interrupted``: the soak was
    stopped early, so a missing run end is not the server's fault.
    """
    problems: list[str] = []
    for p in peers:
        if p.lost or p.duplicated:
            problems.append(f"{p.name}: {p.lost} rows lost, {p.duplicated} duplicated")
        if p.bad_rows:
            problems.append(f"{p.name}: {p.bad_rows} data_rows events whose rows do not match first_row")
        if p.seq_gaps or p.seq_repeats or p.gap_messages:
            problems.append(f"{p.name}: {p.seq_gaps} events missing and {p.seq_repeats} repeated in the "
                            f"seq numbering; gap messages {p.gap_messages}")
    rows = checks.get("rows", {})
    finished = rows.get("run_finished")
    counts = {f"client {i}": n for i, n in enumerate(rows.get("per_client", []))}
    if rows.get("controller") is not None:
        counts["controller"] = rows["controller"]
    if checks.get("journal", {}).get("rows") is not None:
        counts["journal"] = checks["journal"]["rows"]
    if checks.get("csv", {}).get("rows") is not None:
        counts["csv"] = checks["csv"]["rows"]
    if finished is not None:
        differ = {k: v for k, v in counts.items() if v != finished}
        if differ:
            problems.append(f"run_finished says {finished} rows but: {differ}")
    elif run_id is not None and not interrupted:
        problems.append("the run's end (run_finished) was never received, so its row count is unknown")
    expected = rows.get("expected")
    if expected and finished is not None:
        deviation = (finished - expected) / expected
        rows["deviation"] = r3(deviation)
        if abs(deviation) > 0.01 + rate * 0.05 / expected:
            problems.append(f"{finished} rows produced, {expected} expected ({deviation:+.1%}): the "
                            "experiment did not keep its pace")
    journal = checks.get("journal", {})
    if journal.get("error"):
        problems.append(f"journal check failed: {journal['error']}")
    elif journal.get("lost") or journal.get("duplicated"):
        problems.append(f"journal: {journal['lost']} rows missing, {journal['duplicated']} duplicated")
    if checks.get("csv", {}).get("error") and run_id is not None:
        problems.append(f"CSV check: {checks['csv']['error']}")
    if load.errors:
        problems.append(f"{len(load.errors)} commands failed, e.g. {load.errors[:3]}")
    if load.timeouts:
        problems.append(f"{load.timeouts} commands got no reply within 30 s")
    exit_info = checks.get("server_exit", {})
    if exit_info.get("killed"):
        problems.append(f"the server did not exit within {SERVER_STOP_TIMEOUT:.0f} s of SIGTERM and "
                        "was killed")
    elif exit_info and exit_info.get("code") not in (0, None):
        problems.append(f"the server exited with code {exit_info.get('code')} after SIGTERM")
    if exit_info.get("left_behind"):
        problems.append(f"processes left behind after the server exited: {exit_info['left_behind']}")
    log_info = checks.get("server_log", {})
    if log_info.get("warning_lines"):
        problems.append(f"the server logged {log_info['warning_lines']} warnings/errors, e.g. "
                        f"{log_info['lines'][:3]}")
    return problems
