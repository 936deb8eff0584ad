"""Recover interrupted runs from the journal: every journalled row ends up in a data file.

A run is interrupted when the journal saw it start but never end: its worker
was killed, or the whole server died. Recovery waits for an orphaned worker
that may still be saving, then writes ``<key>_recovered.csv`` in the run's
folder from the journalled rows, marks the folder ``ABORTED`` and notes in
the manifest why and what was rebuilt, and publishes the run's end
(``run_finished`` with outcome ``aborted``, then ``run_recovered``) so the
journal and every client see the run close.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from session import records
from session.events import Event, RunFinished, RunRecovered
from session.names import file_inside, safe_file_name

from .journal import Journal

Publish = Callable[[Event], Any]


@dataclass
class RecoveryReport:
    """What a recovery did: each rebuilt run (its ``rebuild_run`` result) and any journal damage."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    damage: str | None = None

    def describe(self) -> str:
        """One line for the damage and one per recovered run, or ``nothing to recover``."""
        lines = [f"journal damage: {self.damage}"] if self.damage else []
        for run in self.runs:
            lines.append(f"{run['run_id']}: ABORTED, {run['rows']} rows rebuilt into {run['csv'] or 'no file'}")
        return "\n".join(lines) or "nothing to recover"


def write_rows_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as a CSV, columns in order of first appearance (as PsychoPy orders them)."""
    columns: dict[str, None] = {}
    for row in rows:
        for name in row:
            columns.setdefault(name, None)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    os.replace(tmp, path)


def _pid_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours has finished for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def wait_for_worker(run_dir: Path, timeout: float) -> None:
    """An orphaned worker saves its run when it notices its parent is gone; let it finish."""
    manifest = records.read_manifest(run_dir) or {}
    deadline = time.monotonic() + timeout
    while _pid_alive(manifest.get("worker_pid")) and records.read_status(run_dir) == records.RUNNING \
            and time.monotonic() < deadline:
        time.sleep(0.05)


def rebuild_run(journal: Journal, run: dict[str, Any], *, reason: str, damage: str | None = None,
                wait: float = 0.0) -> dict[str, Any]:
    """Write the run's journalled rows to a CSV and mark its folder ABORTED; returns what was done."""
    run_dir = Path(run["data_dir"]) if run.get("data_dir") else None
    rows = journal.data_rows(run["run_id"])
    csv_name = None
    files: list[str] = []
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if wait:
            wait_for_worker(run_dir, wait)
        csv_name = f"{safe_file_name(run['key'], 'run')}_recovered.csv"  # keys journalled by old servers may be paths
        write_rows_csv(rows, file_inside(run_dir, csv_name))
        previous = records.read_manifest(run_dir) or {"run_id": run["run_id"], "experiment": {"key": run["key"]},
                                                      "exp_info": run.get("exp_info"), "started": run.get("started")}
        files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        files = sorted(set(files) | {records.MANIFEST_FILE, records.STATUS_FILE})
        previous.update(
            status="ABORTED", outcome="aborted", ended=previous.get("ended") or time.time(),
            rows=max(len(rows), previous.get("rows") or 0), data_files=files,
            recovery={"reason": reason, "rows_from_journal": len(rows), "csv": csv_name,
                      "worker_outcome": previous.get("outcome"), "journal_damage": damage,
                      "recovered_at": time.time()},
        )
        records.write_manifest(run_dir, previous)
        records.set_status(run_dir, "ABORTED")
    return {"run_id": run["run_id"], "key": run["key"], "rows": len(rows), "csv": csv_name, "data_files": files}


def recover(journal: Journal, publish: Publish, *, reason: str = "the server stopped while the run was in progress",
            wait: float = 30.0) -> RecoveryReport:
    """Close every run the journal saw start but not end; see the module docstring."""
    damage = journal.damage.describe() if journal.damage else None
    report = RecoveryReport(damage=damage)
    for run in journal.unfinished_runs():
        done = rebuild_run(journal, run, reason=reason, damage=damage, wait=wait)
        publish(RunFinished(run_id=run["run_id"], key=run["key"], outcome="aborted", rows=done["rows"],
                            data_files=done["data_files"], duration=0.0))
        publish(RunRecovered(run_id=run["run_id"], key=run["key"], rows=done["rows"],
                             data_files=done["data_files"], reason=reason, damage=damage))
        report.runs.append(done)
    return report
