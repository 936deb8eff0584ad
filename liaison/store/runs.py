"""Run history as the journal holds it: survives worker and server restarts."""

from __future__ import annotations

from typing import Any

from .journal import Journal


class RunHistory:
    """``list``/``get`` of run records; the journal updates them with each event batch."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The ``limit`` most recent runs, newest first (all of them when ``limit`` is 0 or None)."""
        return self.journal.runs(limit)

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run's record, or None for an unknown ``run_id``."""
        return self.journal.run(run_id)
