"""Run a Session in a child process, supervised by its parent over a pipe.

A crash in an experiment or the GL driver, or a run that hangs and ignores
stop, must not take the service down. The child runs the Session on its
main thread; a receiver thread applies control commands (pause, stop,
expInfo, data...) at once even while ``run()`` holds the main thread, and a
sender thread owns the pipe's write end so the frame loop only ever does a
queue put. The parent renumbers events into its own sequence, notices the
child's death, and can kill it and start a fresh one.

Wire format (pickled tuples):
  parent -> child  ``(request_id, method, kwargs)``
  child -> parent  ``("reply", request_id, ok, value)`` | ``("event", Event)`` | ``("ready", info)``
                   | ``("batch", [message, ...])`` (a burst written at once)
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import SessionError
from .events import Event, Publisher, RunFinished, StatusChanged

# Commands the receiver thread applies itself (they never touch GL).
IMMEDIATE = {
    "pause", "resume", "stop", "get_exp_info", "update_exp_info", "add_data", "annotate",
    "current_trial", "future_trials", "skip_trials", "rewind_trials", "list_experiments", "ping",
    "status", "start_run", "state",
}
# Commands that need the main thread (window, imports of Builder code).
MAIN_THREAD = {"setup_window", "add_experiment", "run_sync"}
SEND_BATCH = 256  # most messages the worker writes to its parent at once


class WorkerError(SessionError):
    """The worker failed a command; ``code`` comes from the child's exception."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class WorkerDied(SessionError):
    code = "internal"


@dataclass(frozen=True)
class WorkerConfig:
    root: str
    data_dir: str | None = None
    window: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    headless: bool | None = None
    rest_message: str = "Please wait for the experimenter"
    switch_interval: float = 0.001


# --- child side -------------------------------------------------------------------

def _error_payload(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        code = "invalid_args" if isinstance(exc, (TypeError, ValueError)) else "internal"
    return {"code": code, "message": str(exc) or type(exc).__name__, "type": type(exc).__name__}


def _picklable(message: tuple) -> bytes:
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an experiment stored something unpicklable in its data
        return pickle.dumps(_sanitised(message), protocol=pickle.HIGHEST_PROTOCOL)


def _sanitised(value: Any) -> Any:
    if isinstance(value, Event):
        for name in getattr(type(value), "__dataclass_fields__", {}):
            setattr(value, name, _sanitised(getattr(value, name)))
        return value
    if isinstance(value, dict):
        return {str(k): _sanitised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_sanitised(v) for v in value)
    try:
        pickle.dumps(value)
        return value
    except Exception:  # noqa: BLE001 - anything pickle refuses travels as its repr
        return repr(value)


def _merge_rows(messages: list[tuple]) -> list[tuple]:
    """Fold consecutive ``data_rows`` events of a run into one (a backlog of rows goes as one event).

    ``data_rows`` means "the rows since the previous one", so contiguous
    rows merge without changing what a client can rebuild, while the
    per-event costs downstream (numbering, JSON, journal, fan-out) are paid once.
    """
    merged: list[tuple] = []
    for message in messages:
        if message[0] == "event" and message[1].type == "data_rows" and merged:
            previous = merged[-1]
            if previous[0] == "event" and previous[1].type == "data_rows":
                head, tail = previous[1], message[1]
                if head.run_id == tail.run_id and head.first_row + len(head.rows) == tail.first_row:
                    head.rows = head.rows + tail.rows
                    continue
        merged.append(message)
    return merged


class _ChildServer:
    """Everything the child process does besides running experiments."""

    def __init__(self, conn, config: WorkerConfig) -> None:
        self.conn = conn
        self.config = config
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.session = None
        self._write_lock = threading.Lock()  # held while a message goes down the pipe
        self._count_lock = threading.Lock()  # held for a counter update only: never blocks a frame
        self._unwritten = 0  # messages queued and not yet written

    def send(self, message: tuple) -> None:
        """Queue a message for the sender thread (any thread; the frame loop only ever does this)."""
        with self._count_lock:
            self._unwritten += 1
            self.outbox.put(message)

    def send_now(self, message: tuple) -> None:
        """Write a reply from the receiver thread itself when nothing is queued before it.

        Saves the hand-over to the sender thread (a thread wake-up, tens to
        hundreds of µs) on the command path, without ever overtaking an event
        published earlier: under the write lock, nothing queued means nothing
        unwritten.
        """
        with self._write_lock:
            with self._count_lock:
                if self._unwritten:
                    self._unwritten += 1
                    self.outbox.put(message)
                    return
            try:
                self.conn.send_bytes(_picklable(message))
            except (OSError, EOFError, BrokenPipeError):
                pass

    def sender_loop(self) -> None:
        """Write queued messages; a burst (many events in one frame) goes as one write."""
        while True:
            batch = [self.outbox.get()]
            while len(batch) < SEND_BATCH:
                try:
                    batch.append(self.outbox.get_nowait())
                except queue.Empty:
                    break
            last = batch[-1] is None
            if last:
                batch.pop()
            queued = len(batch)
            if queued > 1:
                batch = _merge_rows(batch)
            with self._write_lock:
                try:
                    if len(batch) == 1:
                        self.conn.send_bytes(_picklable(batch[0]))
                    elif batch:
                        self.conn.send_bytes(_picklable(("batch", batch)))
                except (OSError, EOFError, BrokenPipeError):
                    return
                finally:
                    with self._count_lock:
                        self._unwritten -= queued
            if last:
                return

    def reply(self, request_id: int, future: Future) -> None:
        def done(f: Future) -> None:
            exc = f.exception()
            if exc is None:
                self.send(("reply", request_id, True, f.result()))
            else:
                self.send(("reply", request_id, False, _error_payload(exc)))

        future.add_done_callback(done)

    def handle(self, request_id: int, method: str, kwargs: dict[str, Any]) -> None:
        session = self.session
        try:
            if method == "shutdown":
                if session._current_ticket() is not None:
                    try:
                        session.stop(outcome=kwargs.get("outcome", "stopped"))
                    except SessionError:
                        pass
                session.queue.stop()
                self.send(("reply", request_id, True, None))
                return
            if method == "probe":  # when the main thread got to it (CLOCK_MONOTONIC: comparable across processes)
                self.reply(request_id, session.queue.submit(time.perf_counter))
                return
            if method in MAIN_THREAD:
                target = {"run_sync": session.run}.get(method) or getattr(session, method)
                self.reply(request_id, session.queue.submit(target, **kwargs))
                return
            if method not in IMMEDIATE:
                raise WorkerError("unknown_command", f"unknown worker command {method!r}")
            result = self.immediate(method, kwargs)
            if isinstance(result, Future):
                self.reply(request_id, result)
            else:
                self.send_now(("reply", request_id, True, result))
        except BaseException as exc:  # noqa: BLE001 - report everything, keep serving
            self.send_now(("reply", request_id, False, _error_payload(exc)))

    def immediate(self, method: str, kwargs: dict[str, Any]) -> Any:
        session = self.session
        if method == "ping":
            return {"pid": os.getpid(), "time": time.time()}
        if method == "status":
            return session.status
        if method == "start_run":
            ticket, _future = session.submit_run(
                kwargs["key"], kwargs.get("exp_info"), seed=kwargs.get("seed"),
                simulate=kwargs.get("simulate"), manifest_extra=kwargs.get("manifest_extra"),
                run_id=kwargs.get("run_id"),
            )
            return {"run_id": ticket.run_id, "key": ticket.key}
        return getattr(session, method)(**kwargs)

    def receiver_loop(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # parent gone: save the run's data, mark it aborted, leave
                if self.session is not None:
                    self.handle(-1, "shutdown", {"outcome": "aborted"})
                return
            try:
                request_id, method, kwargs = message
            except (TypeError, ValueError):
                continue
            self.handle(request_id, method, kwargs or {})


def child_main(conn, config: WorkerConfig) -> None:
    """Entry point of the worker process: the Session lives on this main thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    sys.setswitchinterval(config.switch_interval)  # control threads get the GIL promptly
    server = _ChildServer(conn, config)
    sender = threading.Thread(target=server.sender_loop, name="worker-sender", daemon=True)
    sender.start()
    try:
        from .display import ensure_display

        ensure_display(config.headless)
        from .session import Session

        publisher = Publisher()
        publisher.subscribe(lambda event: server.send(("event", event)))
        server.session = Session(
            config.root, data_dir=config.data_dir, window=config.window or None,
            params=config.params, rest_message=config.rest_message, publisher=publisher,
            capture_output=True,
        )
    except BaseException as exc:  # noqa: BLE001
        server.send(("failed", {**_error_payload(exc), "traceback": traceback.format_exc()}))
        server.send(None)
        sender.join(5)
        return
    server.send(("ready", {"pid": os.getpid(), "experiments": server.session.list_experiments(),
                           "window": server.session.windows.describe()}))
    receiver = threading.Thread(target=server.receiver_loop, name="worker-receiver", daemon=True)
    receiver.start()
    try:
        server.session.serve_forever()
    finally:
        server.session.close()
        server.send(None)
        sender.join(5)


# --- parent side ------------------------------------------------------------------

class _FrameReader:
    """Splits a byte stream into ``multiprocessing.connection`` messages (length-prefixed)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        out = []
        while True:
            if len(buffer) < 4:
                break
            (size,) = struct.unpack("!i", buffer[:4])
            header = 4
            if size == -1:  # messages over 2 GiB carry an 8-byte length
                if len(buffer) < 12:
                    break
                (size,) = struct.unpack("!Q", buffer[4:12])
                header = 12
            if len(buffer) < header + size:
                break
            out.append(bytes(buffer[header:header + size]))
            del buffer[:header + size]
        return out


class WorkerHost:
    """Start, command and supervise one worker process at a time.

    Events from the child are republished on ``self.events`` with the host's
    own sequence numbers, so numbering continues across worker restarts.

    Replies and events are read by a thread of the host's own, or, given an
    asyncio ``loop`` (a server), by that loop itself: one thread hand-over
    less on every command's way back and every event's way out.
    """

    def __init__(self, config: WorkerConfig, publisher: Publisher | None = None,
                 on_exit: Callable[[int | None], None] | None = None,
                 on_start: Callable[["WorkerHost"], None] | None = None, loop=None) -> None:
        self.config = config
        self.loop = loop
        self._dead = threading.Event()
        self.events = publisher or Publisher()
        self.on_exit = on_exit
        self.on_start = on_start  # after every successful (re)start, e.g. to restore state
        self.lost_runs: dict[str, str] = {}  # run id -> why: runs whose end this host announced
        self.process: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self._conn = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: dict[str, Any] | None = None
        self.current_run: dict[str, Any] | None = None
        self._killing = False
        self._up = threading.Event()
        self.restarting = False  # a fresh worker is on its way: commands may wait for it
        self.restarts = 0

    # lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the worker and wait until its Session is ready (window open).

        The child is a fresh ``python -m session.worker`` talking over a socket
        pair, so nothing of the parent (its ``__main__``, its threads) leaks in.
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
        self._failure = None
        self._killing = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "session.worker", str(child_sock.fileno())],
            pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
        )
        child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._conn.send(self.config)
        self._dead.clear()
        if self.loop is not None:
            self._reader = None
            self.loop.call_soon_threadsafe(self._watch, self._conn, self.process)
        else:
            self._reader = threading.Thread(target=self._read_loop, args=(self._conn, self.process),
                                            name="worker-reader", daemon=True)
            self._reader.start()
        if not self._ready.wait(timeout):
            self.kill()
            raise WorkerDied(f"the session worker did not become ready within {timeout:.0f} s")
        if self._failure is None and self.process.poll() is not None:
            raise WorkerDied(f"the session worker exited during start (code {self.process.returncode})")
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
        return self.process is not None and self.process.poll() is None and self._ready.is_set() \
            and self._failure is None

    def kill(self) -> None:
        """End the worker at once (SIGKILL): for runs that ignore stop."""
        self._killing = True
        self._up.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(10)
        elif self.loop is not None and self.process is not None and not self._in_loop_thread():
            self._dead.wait(10)  # the loop sees the end of the pipe and reports the death

    def _in_loop_thread(self) -> bool:
        try:
            import asyncio

            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def restart(self, timeout: float = 60.0) -> dict[str, Any]:
        self.restarting = True
        try:
            self.kill()
            self.restarts += 1
            return self.start(timeout)
        finally:
            self.restarting = False

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop any run (its data are saved), close the window, end the worker."""
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
        """Send a command; the future resolves with the child's reply."""
        future: Future = Future()
        if not self.alive:
            future.set_exception(WorkerDied("the session worker is not running"))
            return future
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = future
        try:
            with self._send_lock:
                self._conn.send((request_id, method, kwargs))
        except (OSError, EOFError, BrokenPipeError, pickle.PicklingError) as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            future.set_exception(WorkerDied(f"could not send to the worker: {exc}"))
        return future

    def request(self, method: str, timeout: float | None = 30.0, **kwargs: Any) -> Any:
        return self.submit(method, **kwargs).result(timeout)

    def abort(self, grace: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the run; if it has not ended within ``grace`` s, kill the worker and start anew."""
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

    # reader ---------------------------------------------------------------------------
    def _read_loop(self, conn, process) -> None:
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            except Exception:  # noqa: BLE001 - an unreadable message is skipped, not fatal
                continue
            self._dispatch(message)
        self._on_death(process)

    def _watch(self, conn, process) -> None:
        """Loop mode: read the pipe whenever it is readable, on the loop's thread."""
        frames = _FrameReader()
        fd = conn.fileno()

        def readable() -> None:
            try:
                data = os.read(fd, 1 << 20)  # one read per readiness: never blocks
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(fd)
                threading.Thread(target=self._on_death, args=(process,), name="worker-death", daemon=True).start()
                return
            for payload in frames.feed(data):
                try:
                    message = pickle.loads(payload)
                except Exception:  # noqa: BLE001
                    continue
                self._dispatch(message)

        self.loop.add_reader(fd, readable)

    def _dispatch(self, message: tuple) -> None:
        """One message from the child: an event, a reply, or how its start went."""
        kind = message[0]
        if kind == "batch":
            for item in message[1]:
                self._dispatch(item)
        elif kind == "event":
            self._on_event(message[1])
        elif kind == "reply":
            _, request_id, ok, value = message
            with self._lock:
                future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(WorkerError(value.get("code", "internal"),
                                                     value.get("message", ""), value))
        elif kind == "ready":
            self.info = message[1]
            self._ready.set()
        elif kind == "failed":
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
            self.current_run = None
        self.events.publish(event)

    def _on_death(self, process) -> None:
        self._up.clear()
        try:
            code = process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerDied(f"the session worker exited (code {code})"))
        run = self.current_run
        self.current_run = None
        if run is not None:  # cut short from outside the experiment: aborted, whatever the cause
            self.lost_runs[run["run_id"]] = (
                "the run was aborted: its worker did not stop in time and was killed" if self._killing
                else f"the session worker died during the run (exit code {code})")
            self.events.publish(RunFinished(
                run_id=run["run_id"], key=run["key"], outcome="aborted", rows=run["rows"],
                data_files=[], duration=0.0,
            ))
        self.events.publish(StatusChanged(status="worker_exited" if not self._killing else "idle"))
        self._ready.set()
        self._dead.set()
        if self.on_exit is not None:
            self.on_exit(code)


if __name__ == "__main__":
    _conn = Connection(int(sys.argv[1]))
    child_main(_conn, _conn.recv())
