"""Run the server-side halves of the enabled plugins, each on its own thread.

The hub hands every event to :meth:`ServerPlugins.on_event` on the event
loop's thread, after it is journalled; that only puts the event on each
plugin's bounded queue, so a slow or stuck plugin can never delay clients,
the journal or the experiment. Each plugin's thread calls its hooks in event
order; a hook that raises becomes a ``plugin_error`` event.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from session.events import Event, PluginError
from session.records import read_manifest

from . import PluginSpec, parse_spec, resolve
from .base import Plugin, SessionInfo

log = logging.getLogger("liaison.plugins")
_STOP = object()
TYPED_HOOKS = {
    "run_paused": "paused", "run_resumed": "resumed", "run_stopping": "stopping", "annotation": "annotated",
    "data_added": "data_added", "data_rows": "data_rows",
}


class PluginLoadError(ValueError):
    """A plugin could not be enabled (unknown name, bad option, missing package); the message says which."""


class _Runner:
    """One plugin's queue and thread."""

    def __init__(self, name: str, plugin: Plugin, publish: Callable[[Event], Any]) -> None:
        self.name = name
        self.plugin = plugin
        self.publish = publish
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, int(plugin.queue_limit)))
        self.dropped = 0
        self.errors = 0
        self.thread = threading.Thread(target=self._loop, name=f"plugin-{name}", daemon=True)

    def offer(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                self._failed("queue", None, f"fell behind: {dropped} events were dropped (queue limit "
                                           f"{self.plugin.queue_limit})", "")
            hook, call, args, run_id, is_error_event = item
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - a plugin's failure never stops the server
                if is_error_event:  # failing on a plugin_error: log only, or errors would breed errors
                    log.exception("plugin %s failed on a plugin_error event", self.name)
                else:
                    self._failed(hook, run_id, f"{type(exc).__name__}: {exc}", traceback.format_exc()[-4000:])

    def _failed(self, hook: str, run_id: str | None, error: str, tb: str) -> None:
        self.errors += 1
        log.warning("plugin %s: %s failed: %s", self.name, hook, error)
        self.publish(PluginError(plugin=self.name, hook=hook, where="server", run_id=run_id, error=error,
                                 traceback=tb))


class ServerPlugins:
    """The enabled plugins of one server."""

    def __init__(self, plugins: Sequence[tuple[PluginSpec, Plugin]], publish: Callable[[Event], Any]) -> None:
        self.plugins = list(plugins)
        self.runners = [_Runner(spec.name, plugin, publish) for spec, plugin in self.plugins]
        self._started = False
        self._run_dirs: dict[str, str] = {}

    @classmethod
    def from_specs(cls, specs: Sequence[str | PluginSpec | dict], publish: Callable[[Event], Any]) -> "ServerPlugins":
        """Parse, resolve and instantiate each spec; the first that fails raises PluginLoadError."""
        loaded = []
        seen = set()
        for raw in specs or ():
            try:
                spec = parse_spec(raw)
                if spec.name in seen:
                    raise ValueError("enabled twice")
                seen.add(spec.name)
                loaded.append((spec, resolve(spec.name)(dict(spec.options))))
            except ImportError as exc:
                hint = " (for lsl: pip install 'liaison-session[lsl]')" if "pylsl" in str(exc) else ""
                raise PluginLoadError(f"plugin {raw}: {exc}{hint}") from exc
            except (ValueError, TypeError) as exc:
                raise PluginLoadError(f"plugin {raw}: {exc}") from exc
        return cls(loaded, publish)

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def engine_specs(self) -> tuple[tuple[str, str, dict[str, Any]], ...]:
        """What the worker loads: (name, "module:Class", options) of the plugins with an engine half."""
        return tuple((spec.name, plugin.engine, dict(spec.options)) for spec, plugin in self.plugins if plugin.engine)

    def start(self, info: SessionInfo) -> None:
        """Start the plugins' threads; ``session_started`` comes first, before any event queued meanwhile.

        Events can arrive before the server knows its port (recovered runs,
        the worker's start); they wait in the queue (loop thread, like
        :meth:`on_event`, so nothing slips in between).
        """
        for runner in self.runners:
            waiting = []
            while not runner.queue.empty():
                waiting.append(runner.queue.get_nowait())
            runner.queue.put_nowait(("session_started", runner.plugin.session_started, (info,), None, False))
            for item in waiting[:runner.queue.maxsize - 1]:
                runner.queue.put_nowait(item)
            runner.dropped += max(0, len(waiting) - (runner.queue.maxsize - 1))
            runner.thread.start()
        self._started = True

    def on_event(self, event: Event) -> None:
        """Hub listener (loop thread): queue the event's hooks for every plugin; never blocks."""
        if not self.runners:
            return
        run_id = getattr(event, "run_id", None)
        is_error = event.type == "plugin_error"
        data_dir = None
        if event.type == "run_started":
            data_dir = self._run_dirs[run_id] = event.data_dir
            while len(self._run_dirs) > 100:  # bounded: only recent runs can still end
                self._run_dirs.pop(next(iter(self._run_dirs)))
        elif event.type in ("run_finished", "run_failed"):
            data_dir = self._run_dirs.pop(run_id, None)
        for runner in self.runners:
            plugin = runner.plugin
            if event.type == "run_started":
                runner.offer(("run_started", _with_manifest, (plugin.run_started, event, data_dir), run_id, False))
            elif event.type in ("run_finished", "run_failed"):
                runner.offer(("run_ended", _with_manifest, (plugin.run_ended, event, data_dir), run_id, False))
            elif event.type in TYPED_HOOKS:
                hook = TYPED_HOOKS[event.type]
                runner.offer((hook, getattr(plugin, hook), (event,), run_id, False))
            runner.offer(("event", plugin.event, (event,), run_id, is_error))

    def close(self, timeout: float = 10.0) -> None:
        """Call ``session_stopping`` and wait (bounded) for each plugin's thread to finish its queue."""
        if not self._started:
            return
        for runner in self.runners:
            try:
                runner.queue.put(("session_stopping", runner.plugin.session_stopping, (), None, False),
                                 timeout=timeout)
                runner.queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.error("plugin %s is stuck; not waiting for it", runner.name)
        for runner in self.runners:
            runner.thread.join(timeout)
        self._started = False


def _with_manifest(hook: Callable, event: Event, data_dir: str | None) -> None:
    """Call a run hook with the run's manifest, read on the plugin's thread (off the loop)."""
    manifest = read_manifest(Path(data_dir)) if data_dir else None
    hook(event, manifest)
