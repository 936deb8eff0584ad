"""Run a Session in a worker process, supervised by its host over a pipe.

A crash in an experiment or the GL driver, or a run that hangs and ignores
stop, must not take the service down. :class:`WorkerHost` starts the worker
(``python -m session.worker_child``, see :mod:`session.worker_child`), sends
it commands, republishes its events with the host's own numbering, notices
its death by the process itself (not by the end of the pipe: an experiment
may fork a child that keeps the pipe open), kills its whole process group on
abort, and restarts it after an unexpected exit.

The host never blocks on a write to the worker: in loop mode (a server) the
pipe is non-blocking and unsent frames wait in a bounded buffer flushed when
the pipe is writable, while the same loop keeps reading the worker's replies
and events. Too many requests in flight, or too many bytes unsent, are
refused at once with :class:`WorkerBusy` instead of queueing without bound.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import pipe
from .errors import SessionError
from .events import Event, Publisher, RunFinished, StatusChanged

MAX_IN_FLIGHT = 4096  # requests sent and not yet answered
MAX_UNSENT_BYTES = 16 << 20  # frames waiting for the pipe to become writable
READ_CHUNK = 1 << 20


class WorkerError(SessionError):
    """The worker failed a command; ``code`` comes from the worker's exception."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class WorkerBusy(WorkerError):
    """The worker has too much outstanding work; the command was not sent."""

    def __init__(self, message: str) -> None:
        super().__init__("busy", message)


class WorkerDied(SessionError):
    """The worker is not running (it died, was killed, or never started)."""

    code = "internal"


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker's Session is made with (sent as the pipe's first message)."""

    root: str
    data_dir: str | None = None
    window: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    headless: bool | None = None
    rest_message: str = "Please wait for the experimenter"
    switch_interval: float = 0.001  # 0.2 ms cost the no-flip fan-out ~30 % of its rows/s in bench.py
    priority: str = "high"  # session.priority level for the experiment's thread
    cores: dict[str, list[int]] | None = None  # session.priority.CorePlan; None: the worker plans its own
    plugins: tuple = ()  # engine plugins: (name, "module:Class", options), from the server's registry
    clock: str = "float"  # session clock: float | iso | strftime format (session/clock.py)


class _LoopWriter:
    """Frames to the worker, written without ever blocking the event loop (loop thread only)."""

    def __init__(self, loop, sock: socket.socket, on_error: Callable[[], None]) -> None:
        self.loop = loop
        self.sock = sock
        self.buffer = bytearray()
        self.on_error = on_error
        self._watching = False

    def write(self, frame: bytes) -> None:
        if not self.buffer:
            try:
                sent = self.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.on_error()
                return
            frame = frame[sent:]
            if not frame:
                return
        self.buffer += frame
        if not self._watching:
            self._watching = True
            self.loop.add_writer(self.sock.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.stop()
            self.on_error()
            return
        del self.buffer[:sent]
        if not self.buffer:
            self.stop()

    def stop(self) -> None:
        if self._watching:
            self._watching = False
            try:
                self.loop.remove_writer(self.sock.fileno())
            except (ValueError, OSError):  # the socket is already closed
                pass


class WorkerHost:
    """Start, command and supervise one worker process at a time.

    Events from the worker are republished on ``self.events`` with the host's
    own sequence numbers, so numbering continues across worker restarts.
    Replies and events are read by a thread of the host's own or, given an
    asyncio ``loop`` (a server), by that loop itself: one thread hand-over
    less on every command's way back and every event's way out.

    With ``supervise`` the host restarts a worker that exits unexpectedly;
    ``on_exit(code)`` is told of every unexpected exit, ``on_start(host)``
    runs after every successful (re)start (e.g. to restore state).
    """

    def __init__(self, config: WorkerConfig, publisher: Publisher | None = None,
                 on_exit: Callable[[int | None], None] | None = None,
                 on_start: Callable[[WorkerHost], None] | None = None, loop=None,
                 supervise: bool = False) -> None:
        self.config = config
        self.loop = loop
        self.events = publisher or Publisher()
        self.on_exit = on_exit
        self.on_start = on_start
        self.supervise = supervise
        self.lost_runs: dict[str, str] = {}  # run id -> why: runs whose end this host announced
        self.process: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.current_run: dict[str, Any] | None = None
        self.restarts = 0
        self.restarting = False  # a fresh worker is on its way: commands may wait for it
        self._sock: socket.socket | None = None
        self._writer: _LoopWriter | None = None
        self._send_lock = threading.Lock()  # thread mode: one writer at a time
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Future, str]] = {}
        self._next_id = 0
        self._ready = threading.Event()
        self._up = threading.Event()
        self._dead = threading.Event()
        self._failure: dict[str, Any] | None = None
        self._killing = False
        self._closing = False
        self._ended_runs: collections.deque[str] = collections.deque(maxlen=64)
        self._restart_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._drain: tuple[socket.socket, Callable[[], None]] | None = None

    # lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the worker and wait until its Session is ready (window open).

        The worker is a fresh ``python -m session.worker_child`` in its own
        process group, talking over a socket pair, so nothing of the host
        (its ``__main__``, its threads) leaks in and a kill reaches every
        process the experiment started.
        """
        parent_sock, child_sock = socket.socketpair()
        # PsychoPy calls socket.setdefaulttimeout(), which makes new sockets
        # non-blocking at the OS level; the child would then read EAGAIN and quit.
        parent_sock.setblocking(True)
        child_sock.setblocking(True)
        env = dict(os.environ)
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        self._ready.clear()
        self._dead.clear()
        self._failure = None
        self._killing = False
        self._closing = False
        process = subprocess.Popen(
            [sys.executable, "-m", "session.worker_child", str(child_sock.fileno())],
            pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        child_sock.close()
        parent_sock.sendall(pipe.encode(self.config))
        self.process = process
        self._sock = parent_sock
        threading.Thread(target=self._wait_for_exit, args=(process, parent_sock), name="worker-exit",
                         daemon=True).start()
        if self.loop is not None:
            parent_sock.setblocking(False)
            self._writer = _LoopWriter(self.loop, parent_sock, lambda: None)
            self.loop.call_soon_threadsafe(self._watch, parent_sock)
        else:
            self._writer = None
            self._reader = threading.Thread(target=self._read_loop, args=(parent_sock,), name="worker-reader",
                                            daemon=True)
            self._reader.start()
        if not self._ready.wait(timeout):
            self.kill()
            raise WorkerDied(f"the session worker did not become ready within {timeout:.0f} s")
        if self._failure is None and process.poll() is not None:
            raise WorkerDied(f"the session worker exited during start (code {process.returncode})")
        if self._failure is not None:
            raise WorkerDied(f"the session worker failed to start: {self._failure.get('message')}\n"
                             f"{self._failure.get('traceback', '')}")
        if self.on_start is not None:
            self.on_start(self)
        self._up.set()
        self.restarting = False
        return self.info

    def wait_up(self, timeout: float) -> bool:
        """Wait while a restart is under way; True once a worker is serving."""
        deadline = time.monotonic() + timeout
        while not self._up.wait(0.05):
            if not self.restarting or time.monotonic() > deadline:
                return self.alive
        return self.alive

    @property
    def alive(self) -> bool:
        """Whether a worker is running and ready for commands."""
        return self.process is not None and self.process.poll() is None and self._ready.is_set() \
            and self._failure is None and not self._dead.is_set()

    def kill(self) -> None:
        """End the worker and everything it started at once (SIGKILL to its process group)."""
        self._killing = True
        self._up.clear()
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait(10)
        if process is not None and not self._in_loop_thread():
            self._dead.wait(10)  # the death is handled (pending commands failed, run ended)

    def _in_loop_thread(self) -> bool:
        if self.loop is None:
            return False
        import asyncio

        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def restart(self, timeout: float = 60.0) -> dict[str, Any]:
        """Kill the worker (if any) and start a fresh one."""
        self.restarting = True
        try:
            self.kill()
            self.restarts += 1
            return self.start(timeout)
        finally:
            self.restarting = False

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop any run (its data are saved), close the window, end the worker; no restart follows."""
        self._closing = True
        if self.alive:
            try:
                self.request("shutdown", timeout=5)
            except Exception:  # noqa: BLE001 - a worker that cannot answer is killed below
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    # commands ---------------------------------------------------------------------
    def submit(self, method: str, **kwargs: Any) -> Future:
        """Send a command; the future resolves with the worker's reply.

        Never blocks on the pipe: the future fails at once with
        :class:`WorkerDied` when no worker runs, or :class:`WorkerBusy` when
        too much is outstanding.
        """
        future: Future = Future()
        if not self.alive:
            future.set_exception(WorkerDied("the session worker is not running"))
            return future
        writer = self._writer
        with self._lock:
            if len(self._pending) >= MAX_IN_FLIGHT or (writer is not None and len(writer.buffer) > MAX_UNSENT_BYTES):
                future.set_exception(WorkerBusy(
                    f"the session worker has {len(self._pending)} commands outstanding; try again shortly"))
                return future
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = (future, method)
        try:
            frame = pipe.encode((request_id, method, kwargs))
        except Exception as exc:  # noqa: BLE001 - e.g. an argument pickle refuses even as repr
            self._forget(request_id)
            future.set_exception(WorkerError("invalid_args", f"cannot send {method}: {exc}"))
            return future
        if writer is not None:
            if self._in_loop_thread():
                writer.write(frame)
            else:
                self.loop.call_soon_threadsafe(writer.write, frame)
            return future
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError as exc:
            self._forget(request_id)
            future.set_exception(WorkerDied(f"could not send to the worker: {exc}"))
        return future

    def _forget(self, request_id: int) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def request(self, method: str, timeout: float | None = 30.0, **kwargs: Any) -> Any:
        """:meth:`submit` and wait for the reply (never from the loop's thread: it would block it).

        Raises what the future holds (WorkerError, WorkerDied, WorkerBusy), or TimeoutError after ``timeout``.
        """
        return self.submit(method, **kwargs).result(timeout)

    def abort(self, grace: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the run; if it has not ended within ``grace`` s, kill the worker and start anew.

        Works from the moment a run was accepted, also while its setup hangs.
        """
        run = self.current_run
        if run is None:
            raise WorkerError("conflict", "cannot abort: no experiment is running")
        try:
            self.request("stop", timeout=grace)
        except Exception:  # noqa: BLE001 - whether stop answered or not, the deadline below decides
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.current_run is not None:
            time.sleep(0.01)
        if self.current_run is None:
            return {"run_id": run["run_id"], "killed": False}
        self.restarting = True
        try:
            self.kill()
            self.start(timeout)
        finally:
            self.restarting = False
        self.restarts += 1
        return {"run_id": run["run_id"], "killed": True}

    # reading ---------------------------------------------------------------------------
    def _read_loop(self, sock: socket.socket) -> None:
        """Thread mode: read until the pipe ends."""
        decoder = pipe.FrameDecoder()
        while True:
            try:
                data = sock.recv(READ_CHUNK)
            except OSError:
                data = b""
            if not data:
                return
            try:
                messages = decoder.feed(data)
            except pipe.PipeCorrupt:
                return
            for message in messages:
                self._dispatch(message)

    def _watch(self, sock: socket.socket) -> None:
        """Loop mode: read the pipe whenever it is readable, on the loop's thread."""
        decoder = pipe.FrameDecoder()
        fd = sock.fileno()

        def readable() -> None:
            while True:
                try:
                    data = sock.recv(READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data = b""
                if not data:
                    self.loop.remove_reader(fd)
                    return
                try:
                    messages = decoder.feed(data)
                except pipe.PipeCorrupt:
                    self.loop.remove_reader(fd)
                    return
                for message in messages:
                    self._dispatch(message)
                if len(data) < READ_CHUNK:
                    return

        self._drain = (sock, readable)  # the exit watcher reads what is left before declaring the death
        self.loop.add_reader(fd, readable)

    def _dispatch(self, message: tuple) -> None:
        """One message from the worker: an event, a reply, or how its start went."""
        kind = message[0]
        if kind == pipe.BATCH:
            for item in message[1]:
                self._dispatch(item)
        elif kind == pipe.EVENT:
            self._on_event(message[1])
        elif kind == pipe.REPLY:
            _, request_id, ok, value = message
            with self._lock:
                future, method = self._pending.pop(request_id, (None, None))
            if ok and method == "start_run" and value and value.get("run_id") not in self._ended_runs \
                    and self.current_run is None:
                self.current_run = {"run_id": value["run_id"], "key": value.get("key"), "rows": 0,
                                    "data_dir": value.get("data_dir")}
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(WorkerError(value.get("code", "internal"),
                                                     value.get("message", ""), value))
        elif kind == pipe.READY:
            self.info = message[1]
            self._ready.set()
        elif kind == pipe.FAILED:
            self._failure = message[1]
            self._ready.set()

    def _on_event(self, event: Event) -> None:
        event.seq = 0
        if event.type == "run_started":
            self.current_run = {"run_id": event.run_id, "key": event.key, "rows": 0,
                                "data_dir": event.data_dir}
        elif event.type == "data_rows" and self.current_run is not None:
            self.current_run["rows"] = event.first_row + len(event.rows)
        elif event.type in ("run_finished", "run_failed"):
            self._ended_runs.append(event.run_id)
            self.current_run = None
        self.events.publish(event)

    # death ------------------------------------------------------------------------------
    def _wait_for_exit(self, process: subprocess.Popen, sock: socket.socket) -> None:
        """Watch the process itself: its exit is its death, whoever else holds the pipe."""
        code = process.wait()
        try:  # whatever the experiment started dies with it (and lets go of the pipe)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.loop is not None:
            done = threading.Event()

            def drain_and_close() -> None:
                try:
                    if self._drain is not None and self._drain[0] is sock:
                        self._drain[1]()  # what the worker wrote before it died still counts
                    if self._writer is not None:
                        self._writer.stop()
                    try:
                        self.loop.remove_reader(sock.fileno())
                    except (ValueError, OSError):
                        pass
                finally:
                    done.set()

            try:
                self.loop.call_soon_threadsafe(drain_and_close)
                done.wait(10)
            except RuntimeError:  # the loop is closed: nothing left to read into
                pass
        elif self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(2)  # what the worker wrote before it died still counts (unless a child holds the pipe)
        try:
            sock.close()
        except OSError:
            pass
        self._on_death(code)

    def _on_death(self, code: int | None) -> None:
        self._up.clear()
        with self._lock:
            pending, self._pending = self._pending, {}
        for future, _method in pending.values():
            if not future.done():
                future.set_exception(WorkerDied(f"the session worker exited (code {code})"))
        expected = self._killing or self._closing
        run = self.current_run
        self.current_run = None
        if run is not None:  # cut short from outside the experiment: aborted, whatever the cause
            self.lost_runs[run["run_id"]] = (
                "the run was aborted: its worker did not stop in time and was killed" if self._killing
                else f"the session worker died during the run (exit code {code})")
            self._ended_runs.append(run["run_id"])
            self.events.publish(RunFinished(
                run_id=run["run_id"], key=run["key"], outcome="aborted", rows=run["rows"],
                data_files=[], duration=0.0,
            ))
        if self._closing:
            status = "shutting_down"
        else:
            status = "idle" if self._killing else "worker_exited"
        self.events.publish(StatusChanged(status=status))
        self._ready.set()
        self._dead.set()
        if expected:
            return
        if self.on_exit is not None:
            self.on_exit(code)
        if self.supervise:
            self.restarting = True  # commands arriving meanwhile wait for the new worker
            threading.Thread(target=self._restart_after_death, name="worker-restart", daemon=True).start()

    def _restart_after_death(self) -> None:
        with self._restart_lock:
            if self._closing or self.alive:
                self.restarting = False
                return
            try:
                self.restart(timeout=120)
            except Exception:  # noqa: BLE001 - said to clients below; the server stays up
                self.events.publish(StatusChanged(status="unavailable"))
