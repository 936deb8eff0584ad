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
    """An experiment was registered and can be run by ``key``."""

    type: ClassVar[str] = "experiment_added"
    key: str
    path: str
    kind: str
    exp_info: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class StatusChanged(Event):
    """The session's status changed (idle, starting, running, paused, stopping, ...)."""

    type: ClassVar[str] = "status"
    status: str
    run_id: str | None = None
    key: str | None = None


@dataclass(kw_only=True, slots=True)
class RunStarted(Event):
    """A run began; ``data_dir`` is where its data files go."""

    type: ClassVar[str] = "run_started"
    run_id: str
    key: str
    exp_info: dict[str, Any]
    data_dir: str


@dataclass(kw_only=True, slots=True)
class RunPaused(Event):
    """The running experiment observed a pause request."""

    type: ClassVar[str] = "run_paused"
    run_id: str
    key: str
    latency: float = 0.0  # seconds from request to the experiment observing it


@dataclass(kw_only=True, slots=True)
class RunResumed(Event):
    """The paused experiment continues."""

    type: ClassVar[str] = "run_resumed"
    run_id: str
    key: str
    latency: float = 0.0


@dataclass(kw_only=True, slots=True)
class RunStopping(Event):
    """A stop was requested; ``run_finished`` follows when the run has ended."""

    type: ClassVar[str] = "run_stopping"
    run_id: str
    key: str


@dataclass(kw_only=True, slots=True)
class RunFinished(Event):
    """A run ended on its own (``completed``), because it was stopped (``stopped``), or was cut
    short (``aborted``: its worker was killed or died, or the host went away).
    """

    type: ClassVar[str] = "run_finished"
    run_id: str
    key: str
    outcome: str
    rows: int
    data_files: list[str]
    duration: float
    gc_max_pause: float = 0.0
    gc_max_boundary_pause: float = 0.0
    plugins: dict[str, Any] = field(default_factory=dict)
    exp_info: dict[str, Any] = field(default_factory=dict)  # as the run ended (experiments add keys)
    timing_ok: bool | None = None
    timing_problem: str | None = None
    timing: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class RunFailed(Event):
    """The run ended with an error; the data recorded until then were saved if possible."""

    type: ClassVar[str] = "run_failed"
    run_id: str
    key: str
    error: str
    traceback: str
    rows: int = 0
    data_files: list[str] = field(default_factory=list)
    plugins: dict[str, Any] = field(default_factory=dict)
    exp_info: dict[str, Any] = field(default_factory=dict)  # as the run ended
    timing_ok: bool | None = None
    timing_problem: str | None = None
    timing: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True)
class RunTiming(Event):
    """The running experiment's frame timing so far (about once a second, at trial boundaries)."""

    type: ClassVar[str] = "run_timing"
    run_id: str
    key: str
    timing: dict[str, Any]


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
    """The experiment info (participant, session, ...) was updated."""

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
    """A value was added to the run's data with ``add_data``."""

    type: ClassVar[str] = "data_added"
    run_id: str | None
    name: str
    value: Any


@dataclass(kw_only=True, slots=True)
class Annotated(Event):
    """A free-text note was added with ``annotate``."""

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
class PluginError(Event):
    """A plugin's hook raised (or the plugin could not load); the run goes on without it."""

    type: ClassVar[str] = "plugin_error"
    plugin: str
    hook: str
    where: str  # "engine" (the worker, experiment's thread) or "server"
    run_id: str | None
    error: str
    traceback: str = ""


@dataclass(kw_only=True, slots=True)
class HardwareResponse(Event):
    """A session device reported a response (key or button press, light sensor value...).

    Topic ``hardware``, which ``all`` does not include: subscribe to it by name.
    """

    type: ClassVar[str] = "hardware_response"
    device: str
    response: str
    data: dict[str, Any] = field(default_factory=dict)
    t: float | None = None
    session_time: float = 0.0
    run_id: str | None = None


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
        RunFinished, RunFailed, RunTiming, RunRecovered, ExpInfoChanged, DataRows, DataAdded, Annotated, TrialsChanged,
        PluginError,
        HardwareResponse,
        PlanChanged,
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
        """The ``seq`` of the last event published (``first_seq - 1`` before any)."""
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
        """Number ``event``, stamp its time (unless it has one) and hand it to every sink; any thread.

        Mutates and returns ``event``. A sink that raises is skipped, never the caller.
        """
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
