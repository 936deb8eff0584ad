"""Plugins for the tests: one that raises in both halves, one whose frame-exact hook is slow."""

from __future__ import annotations

import time

from liaison.plugins import Plugin
from session.plugins import EnginePlugin


class RaisingEngine(EnginePlugin):
    def routine_started(self, event) -> None:
        raise RuntimeError(f"engine hook broke on routine {event.routine}")


class RaisingPlugin(Plugin):
    engine = "liaison_test_plugins:RaisingEngine"

    def data_rows(self, event) -> None:
        raise RuntimeError("server hook broke on data rows")


class SlowEngine(EnginePlugin):
    """Spends ``delay_ms`` (busy, like real work) in every trial start; its budget is 1 ms."""

    budget = 0.001

    def trial_started(self, event) -> None:
        until = time.perf_counter() + float(self.options.get("delay_ms", 5)) / 1e3
        while time.perf_counter() < until:
            pass


class SlowPlugin(Plugin):
    engine = "liaison_test_plugins:SlowEngine"
    known_options = ("delay_ms",)
