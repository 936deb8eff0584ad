"""Run history as the server saw it, kept across worker restarts."""

from __future__ import annotations

import collections
from typing import Any

from session.events import Event


class RunTracker:
    """Builds a record per run from the event stream (the parent's view)."""

    def __init__(self, keep: int = 1000) -> None:
        self.runs: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.keep = keep

    def __call__(self, event: Event) -> None:
        run_id = getattr(event, "run_id", None)
        if run_id is None:
            return
        if event.type == "run_started":
            self.runs[run_id] = {
                "run_id": run_id, "key": event.key, "status": "running", "outcome": None,
                "exp_info": event.exp_info, "data_dir": event.data_dir, "rows": 0,
                "started": event.time, "ended": None, "error": None, "data_files": [],
            }
            while len(self.runs) > self.keep:
                self.runs.popitem(last=False)
            return
        record = self.runs.get(run_id)
        if record is None:
            return
        if event.type == "data_rows":
            record["rows"] = event.first_row + len(event.rows)
        elif event.type == "run_paused":
            record["status"] = "paused"
        elif event.type == "run_resumed":
            record["status"] = "running"
        elif event.type == "run_stopping":
            record["status"] = "stopping"
        elif event.type in ("run_finished", "run_failed"):
            record["status"] = "ended"
            record["outcome"] = getattr(event, "outcome", "failed")
            record["ended"] = event.time
            record["rows"] = max(record["rows"], event.rows)
            record["data_files"] = list(event.data_files)
            record["error"] = getattr(event, "error", None)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(r) for r in reversed(list(self.runs.values())[-limit:])]

    def get(self, run_id: str) -> dict[str, Any] | None:
        record = self.runs.get(run_id)
        return dict(record) if record else None
