"""Typed session events and a thread-safe publisher that numbers them.

Events are plain dataclasses so they pickle cheaply across the worker pipe and
cost the frame loop only an object construction and a queue put. Every event
gets a sequence number, strictly increasing, assigned under the publisher's
lock so subscribers see events in ``seq`` order.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar

Sink = Callable[["Event"], None]


@dataclass(kw_only=True, slots=True)
class Event:
    """Base of every event: ``seq`` and wall-clock ``time`` are set on publish."""

    type: ClassVar[str] = "event"
    seq: int = 0
    time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict including the event type, for logs and the wire."""
        data = asdict(self)
        data["type"] = self.type
        return data


@dataclass(kw_only=True, slots=True)
class ExperimentAdded(Event):
    type: ClassVar[str] = "experiment_added"
    key: str
    path: str
    kind: str
    exp_info: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class StatusChanged(Event):
    type: ClassVar[str] = "status"
    status: str
    run_id: str | None = None
    key: str | None = None


@dataclass(kw_only=True, slots=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    run_id: str
    key: str
    exp_info: dict[str, Any]
    data_dir: str


@dataclass(kw_only=True, slots=True)
class RunPaused(Event):
    type: ClassVar[str] = "run_paused"
    run_id: str
    key: str
    latency: float = 0.0  # seconds from request to the experiment observing it


@dataclass(kw_only=True, slots=True)
class RunResumed(Event):
    type: ClassVar[str] = "run_resumed"
    run_id: str
    key: str
    latency: float = 0.0


@dataclass(kw_only=True, slots=True)
class RunStopping(Event):
    type: ClassVar[str] = "run_stopping"
    run_id: str
    key: str


@dataclass(kw_only=True, slots=True)
class RunFinished(Event):
    """A run ended on its own (``completed``) or because it was stopped (``stopped``)."""

    type: ClassVar[str] = "run_finished"
    run_id: str
    key: str
    outcome: str
    rows: int
    data_files: list[str]
    duration: float
    gc_max_pause: float = 0.0
    gc_max_boundary_pause: float = 0.0


@dataclass(kw_only=True, slots=True)
class RunFailed(Event):
    type: ClassVar[str] = "run_failed"
    run_id: str
    key: str
    error: str
    traceback: str
    rows: int = 0
    data_files: list[str] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class RunRecovered(Event):
    """An interrupted run's data were rebuilt from the journal (after a crash or a kill)."""

    type: ClassVar[str] = "run_recovered"
    run_id: str
    key: str
    rows: int
    data_files: list[str]
    reason: str
    damage: str | None = None


@dataclass(kw_only=True, slots=True)
class ExpInfoChanged(Event):
    type: ClassVar[str] = "exp_info_changed"
    run_id: str | None
    exp_info: dict[str, Any]


@dataclass(kw_only=True, slots=True)
class DataRows(Event):
    """Rows completed since the previous ``DataRows`` of this run (incremental)."""

    type: ClassVar[str] = "data_rows"
    run_id: str
    key: str
    first_row: int
    rows: list[dict[str, Any]]


@dataclass(kw_only=True, slots=True)
class DataAdded(Event):
    type: ClassVar[str] = "data_added"
    run_id: str | None
    name: str
    value: Any


@dataclass(kw_only=True, slots=True)
class Annotated(Event):
    type: ClassVar[str] = "annotation"
    run_id: str | None
    text: str


@dataclass(kw_only=True, slots=True)
class TrialsChanged(Event):
    """The trial sequence of the running loop was skipped or rewound."""

    type: ClassVar[str] = "trials_changed"
    run_id: str
    action: str
    n: int


@dataclass(kw_only=True, slots=True)
class PlanChanged(Event):
    """A session plan moved on: its status, the step it is at, and what just happened."""

    type: ClassVar[str] = "plan_changed"
    plan_id: str
    name: str
    status: str
    cursor: int
    steps: int
    step: dict[str, Any] | None = None
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        ExperimentAdded, StatusChanged, RunStarted, RunPaused, RunResumed, RunStopping,
        RunFinished, RunFailed, RunRecovered, ExpInfoChanged, DataRows, DataAdded, Annotated, TrialsChanged, PlanChanged,
    )
}


class Publisher:
    """Numbers events and hands them to sinks, in order, from any thread.

    Sinks are called under the lock so every sink sees the same order; they
    must be quick (a queue put). Slow consumers belong behind a queue.
    """

    def __init__(self, first_seq: int = 1) -> None:
        self._lock = threading.Lock()
        self._next_seq = first_seq
        self._sinks: tuple[Sink, ...] = ()

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def subscribe(self, sink: Sink) -> Callable[[], None]:
        """Add a sink; returns a function that removes it."""
        with self._lock:
            self._sinks = self._sinks + (sink,)

        def unsubscribe() -> None:
            with self._lock:
                self._sinks = tuple(s for s in self._sinks if s is not sink)

        return unsubscribe

    def publish(self, event: Event) -> Event:
        with self._lock:
            event.seq = self._next_seq
            self._next_seq += 1
            if not event.time:  # keep the time of events republished from a worker
                event.time = time.time()
            for sink in self._sinks:
                try:
                    sink(event)
                except Exception:  # noqa: BLE001 - a broken sink must not break the experiment
                    pass
        return event
