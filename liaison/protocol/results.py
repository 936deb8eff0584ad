"""Typed shapes of what the server answers: statuses, outcomes, the state snapshot, command results.

Lenient on purpose where the server may add fields (``extra="allow"``): a
newer server's snapshot still reads in an older client. Clients use these
to give their callers attributes instead of dict keys; the docs and the JS
constants are generated from the enums.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class Status(str, Enum):
    """What the session is doing (the `status` event and `state.status`)."""

    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    WORKER_EXITED = "worker_exited"  # the worker died; a fresh one is being started
    UNAVAILABLE = "unavailable"  # no worker could be started, or it does not answer
    SHUTTING_DOWN = "shutting_down"  # the server is stopping (Ctrl+C, SIGTERM)

    def __str__(self) -> str:
        return self.value


class Outcome(str, Enum):
    """How a run ended (`run_finished.outcome`; `run_failed` means `failed`)."""

    COMPLETED = "completed"  # ran to its end
    STOPPED = "stopped"  # stopped by the experimenter; data saved
    FAILED = "failed"  # the experiment raised (or exited with an error)
    ABORTED = "aborted"  # killed, or cut short by a crash

    def __str__(self) -> str:
        return self.value


class _Lenient(BaseModel):
    """Typed, but readable as a mapping too (``result["run_id"]``), as results were plain dicts before."""

    model_config = ConfigDict(extra="allow")

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in type(self).model_fields or name in (self.model_extra or {}))


class ExperimentInfo(_Lenient):
    """An experiment the session can run."""

    key: str = Field(description="The key to run it by.")
    path: str = Field(description="Its file, relative to the session root.")
    kind: str = Field(description="psyexp or py.")
    exp_info: dict[str, Any] = Field(default_factory=dict, description="Its expInfo defaults.")


class RunRecord(_Lenient):
    """A run as the server's journal records it (`list_runs`, `get_run`, `state.runs`)."""

    run_id: str
    key: str
    status: str = Field(description="running, paused, stopping or ended.")
    outcome: Optional[Outcome] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    data_dir: Optional[str] = None
    rows: int = 0
    exp_info: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    data_files: Optional[list[str]] = None


class ServerInfo(_Lenient):
    """About the server itself."""

    version: str
    session_id: str
    worker_restarts: int = 0
    clients: int = 0


class State(_Lenient):
    """The session as `welcome.state` and the `state` command show it."""

    status: Status = Field(description="What the session is doing.")
    run_id: Optional[str] = Field(None, description="The run in progress, if any.")
    key: Optional[str] = Field(None, description="Its experiment.")
    exp_info: dict[str, Any] = Field(default_factory=dict, description="The run's expInfo, or the session's.")
    rows: int = Field(0, description="Rows the run has published so far.")
    experiments: list[ExperimentInfo] = Field(default_factory=list)
    window: dict[str, Any] = Field(default_factory=dict, description="The session window's parameters.")
    last_seq: int = Field(0, description="`seq` of the newest event.")
    runs: list[RunRecord] = Field(default_factory=list, description="Recent runs, newest first.")
    server: Optional[ServerInfo] = None
    storage_error: Optional[str] = Field(None, description="Why the journal cannot be written, while it cannot.")
    error: Optional[str] = Field(None, description="Why the worker could not be asked, if it could not.")


class RunAccepted(_Lenient):
    """The `run` command's result: the run was accepted and will start at once."""

    run_id: str
    key: str
    data_dir: Optional[str] = None


class Pong(_Lenient):
    """The `ping` command's result."""

    pong: bool
    time: float
    last_seq: int


class Aborted(_Lenient):
    """The `abort` command's result: whether the worker had to be killed."""

    run_id: str
    killed: bool


class ReplayPage(_Lenient):
    """The `replay` command's result: one page of events; ask again from `next_since` while `more`."""

    events: list[dict[str, Any]]
    more: bool
    next_since: int
    gap: Optional[dict[str, int]] = None


RESULT_MODELS: dict[str, type[BaseModel]] = {
    "state": State, "run": RunAccepted, "ping": Pong, "abort": Aborted, "replay": ReplayPage,
    "get_run": RunRecord,
}
