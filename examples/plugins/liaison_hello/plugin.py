"""Example plugin: both halves of a Liaison plugin in a few lines.

``HelloPlugin`` (server process, its own thread): logs every run's outcome.
``HelloFrames`` (worker, the experiment's thread, budgeted): counts frames and
routine starts and finds the longest frame interval, cheaply enough to run at
every flip, and logs a summary when the run ends.
"""

from __future__ import annotations

import logging

from liaison.plugins import Plugin
from session.plugins import EnginePlugin, RoutineBoundary, RunBegin, RunEnd

log = logging.getLogger("liaison.plugins.hello")


class HelloFrames(EnginePlugin):
    """Frame-exact half: runs in the worker, on the experiment's thread."""

    wants_frames = True  # frame_flipped() at every flip of a run
    budget = 0.0002  # 200 µs per call, far more than it needs

    def run_started(self, run: RunBegin) -> None:
        self.frames, self.routines, self.last, self.longest = 0, 0, None, 0.0

    def frame_flipped(self, time: float) -> None:
        if self.last is not None and time - self.last > self.longest:
            self.longest = time - self.last
        self.last = time
        self.frames += 1

    def routine_started(self, event: RoutineBoundary) -> None:
        self.routines += 1

    def run_ended(self, run: RunEnd) -> None:
        greeting = self.options.get("greeting", "Hello")
        log.warning("%s from run %s: %d frames, %d routines, longest frame %.1f ms",
                    greeting, run.run_id, self.frames, self.routines, self.longest * 1e3)


class HelloPlugin(Plugin):
    """Server half: its hooks get the session's typed events on the plugin's own thread."""

    engine = "liaison_hello.plugin:HelloFrames"
    known_options = ("greeting",)

    def run_ended(self, event, manifest) -> None:
        log.warning("%s: run %s of %s %s with %d rows", self.options.get("greeting", "Hello"), event.run_id,
                    event.key, getattr(event, "outcome", "failed"), event.rows)
