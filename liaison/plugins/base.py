"""The server-side half of a plugin: hooks that receive every session event, typed.

Hooks run in the server process on the plugin's own thread (never on the
event loop, never in the experiment's process), in event order. A hook that
raises is reported as a ``plugin_error`` event; the session goes on.
Frame-exact work belongs in the plugin's engine half, named by ``engine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from session.events import (
    Annotated, DataAdded, DataRows, Event, RunFailed, RunFinished, RunPaused, RunResumed, RunStarted, RunStopping,
)


@dataclass(frozen=True)
class SessionInfo:
    """What a plugin learns when the server starts serving."""

    root: str
    data_dir: str
    version: str
    session_id: str
    host: str
    port: int | None


class Plugin:
    """Base of every plugin; override the hooks you need.

    ``options`` are the ``NAME:key=value,...`` options, already parsed;
    reject unknown ones in ``__init__`` (raise ValueError) so a typo stops
    ``liaison serve`` with a clear message. ``engine`` is ``"module:Class"``
    of a :class:`session.plugins.EnginePlugin` the worker instantiates with
    the same options, or None. ``queue_limit`` bounds the events waiting for
    this plugin; beyond it they are dropped and a ``plugin_error`` says how many.
    """

    engine: str | None = None
    queue_limit: int = 10_000
    known_options: Iterable[str] | None = None  # names accepted; None: accept any

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)
        if self.known_options is not None:
            unknown = sorted(set(self.options) - set(self.known_options))
            if unknown:
                raise ValueError(f"unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(self.known_options)) or 'none'})")

    def session_started(self, info: SessionInfo) -> None:
        """The server is serving (its worker is up)."""

    def session_stopping(self) -> None:
        """The server is shutting down: the last call."""

    def run_started(self, event: RunStarted, manifest: dict[str, Any] | None) -> None:
        """A run started; ``manifest`` is its ``manifest.json`` as written before the run."""

    def run_ended(self, event: RunFinished | RunFailed, manifest: dict[str, Any] | None) -> None:
        """A run ended (its data are saved); ``manifest`` is the final one (None if the worker died)."""

    def paused(self, event: RunPaused) -> None:
        """The experiment observed a pause."""

    def resumed(self, event: RunResumed) -> None:
        """The experiment observed a resume."""

    def stopping(self, event: RunStopping) -> None:
        """A stop was requested."""

    def annotated(self, event: Annotated) -> None:
        """An annotation was added (during a run or between runs)."""

    def data_added(self, event: DataAdded) -> None:
        """A value was added to the running experiment's current row."""

    def data_rows(self, event: DataRows) -> None:
        """Rows completed since the previous ``data_rows`` of the run."""

    def event(self, event: Event) -> None:
        """Every event (after its typed hook, if it has one), including ``plugin_error``."""
