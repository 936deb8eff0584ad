"""A queue of callables drained on the main thread, woken at once by submits.

OpenGL windows belong to the thread that made them, and PsychoPy's window is
made on the main thread. Other threads hand work to it here and get a
:class:`concurrent.futures.Future` back. Unlike PsychoPy's ``SessionQueue``
there is no polling interval: ``queue.SimpleQueue.get`` wakes as soon as a
task is put, and the timeout only paces idle work (rest screen, log flush).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

_STOP = object()


class MainThreadQueue:
    """Work for the main thread from any thread; see the module docstring.

    ``submit``, ``call`` and ``stop`` may be called from any thread; ``run_forever`` and
    ``run_pending`` only from the main thread.
    """

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._running = False
        self.main_thread = threading.main_thread()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` for the main thread; returns its future."""
        future: Future = Future()
        self._tasks.put((future, fn, args, kwargs, time.perf_counter()))
        return future

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``fn`` on the main thread and wait for its result.

        Called on the main thread itself it runs directly, so code never
        deadlocks waiting on itself.
        """
        if threading.current_thread() is self.main_thread:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result(timeout)

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the tasks queued before this."""
        self._tasks.put(_STOP)

    def run_pending(self) -> int:
        """Run the tasks already queued, without waiting; returns how many ran."""
        count = 0
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                return count
            if item is _STOP:
                self._tasks.put(_STOP)
                return count
            self._execute(item)
            count += 1

    def run_forever(self, idle: Callable[[], None] | None = None, idle_interval: float = 0.1) -> None:
        """Run tasks as they arrive until :meth:`stop`; call ``idle`` when quiet."""
        self._running = True
        next_idle = time.monotonic()
        try:
            while True:
                timeout = max(0.0, next_idle - time.monotonic()) if idle else None
                try:
                    item = self._tasks.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    return
                if item is not None:
                    self._execute(item)
                if idle is not None and time.monotonic() >= next_idle:
                    try:
                        idle()
                    except Exception:  # noqa: BLE001 - idle work must never end the loop
                        pass
                    next_idle = time.monotonic() + idle_interval
        finally:
            self._running = False

    @staticmethod
    def _execute(item: tuple) -> None:
        future, fn, args, kwargs, _queued_at = item
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - errors belong to the caller
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)
