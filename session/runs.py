"""What a run is while the session holds it: accepted (ticket), in progress (active), ended (result).

Plain data, no behaviour beyond naming and describing; :mod:`session.session`
accepts tickets, :mod:`session.execution` turns one into a result.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from . import simulate
    from .timing import TimingRecorder

IDLE, STARTING, RUNNING, PAUSED, STOPPING = "idle", "starting", "running", "paused", "stopping"


@dataclass
class RunTicket:
    """A run that has been accepted and waits for the main thread."""

    run_id: str
    key: str
    exp_info: dict[str, Any]
    seed: int | None
    simulate: "simulate.Policy | None" = None  # a dry run: the simulated participant answers
    manifest_extra: dict[str, Any] = field(default_factory=dict)  # e.g. which plan step this run is
    stop_requested: bool = False
    stop_outcome: str = "stopped"  # "aborted" when the supervisor is gone


@dataclass
class ActiveRun:
    """What the session knows about the run in progress."""

    ticket: RunTicket
    data_dir: Path
    exp_info: dict[str, Any]
    this_exp: Any = None
    guard: Any = None  # the run's GcGuard: middle-generation collections at trial boundaries
    timing: "TimingRecorder | None" = None  # the run's frame timing (session.timing)
    published_rows: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class RunResult:
    """How a run ended: outcome (completed | stopped | aborted | failed), its files, rows and reports."""

    run_id: str
    key: str
    outcome: str
    data_dir: Path
    data_files: list[str]
    rows: int
    exp_info: dict[str, Any]
    seed: int
    duration: float
    gc_max_pause: float
    gc_max_boundary_pause: float = 0.0
    error: str | None = None
    traceback: str | None = None
    plugins: dict[str, Any] = field(default_factory=dict)  # engine plugins' hook accounting (session.plugins)
    timing: dict[str, Any] | None = None  # session.timing report

    def describe(self) -> dict[str, Any]:
        """The summary clients see in the session's state (no traceback, no paths outside the run)."""
        return {
            "run_id": self.run_id, "key": self.key, "outcome": self.outcome,
            "rows": self.rows, "data_files": self.data_files, "duration": self.duration,
            "error": self.error,
        }


def new_run_id(key: str) -> str:
    """A run id that sorts by start time and names the experiment: ``20261202T010203-stroop-a1b2c3``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in key)[:40]
    return f"{datetime.now():%Y%m%dT%H%M%S}-{safe}-{secrets.token_hex(3)}"


def plain_rows(rows: list[dict]) -> list[dict]:
    """Shallow copies: PsychoPy may still write to a row dict after we publish it."""
    return [dict(row) for row in rows]


def settled(value: Any) -> Future:
    """A Future that already holds ``value`` (commands that needed no trip to the experiment's thread)."""
    done: Future = Future()
    done.set_result(value)
    return done


def call_now(fn: Callable[..., Any], *args: Any) -> Future:
    """Call ``fn`` here and now; its result or exception in a settled Future."""
    done: Future = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - the caller reads it from the Future
        done.set_exception(exc)
    return done
