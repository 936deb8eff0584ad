"""The worker process: a Session on its main thread, commanded over the pipe by its host.

A receiver thread applies control commands (pause, stop, expInfo, data...)
at once even while ``run()`` holds the main thread; commands that need the
window or import Builder code go to the main thread's queue. A sender
thread owns the pipe's write end, so the frame loop only ever does a queue
put. Started as ``python -m session.worker_child FD`` by
:class:`session.worker.WorkerHost`.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any

from . import pipe, priority
from .errors import SessionError

# Commands the receiver thread applies itself (they never touch GL).
IMMEDIATE = {
    "pause", "resume", "stop", "get_exp_info", "update_exp_info", "add_data", "annotate",
    "current_trial", "future_trials", "skip_trials", "rewind_trials", "list_experiments", "ping",
    "status", "start_run", "state", "rescan",
    # devices: checked at once, then queued for the main thread between runs (session/devices.py)
    "list_devices", "add_device", "remove_device", "list_available_devices", "setup_devices",
}
# Commands that need the main thread (window, imports of Builder code).
MAIN_THREAD = {"setup_window", "add_experiment", "run_sync", "check_timing"}
SEND_BATCH = 256  # most messages the worker writes to its host at once


class UnknownWorkerCommand(SessionError):
    """The host asked for a method the worker does not have (a server bug: clients see ``internal``)."""

    code = "unknown_command"


def error_payload(exc: BaseException) -> dict[str, Any]:
    """An exception as the reply's error: its session ``code`` (or a guess), message and type."""
    code = getattr(exc, "code", None)
    if not isinstance(code, str):
        code = "invalid_args" if isinstance(exc, (TypeError, ValueError)) else "internal"
    payload = {"code": code, "message": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    if isinstance(getattr(exc, "details", None), dict):  # e.g. the problems that refused a run
        payload["details"] = exc.details
    return payload


class WorkerChild:
    """Everything the worker process does besides running experiments: the pipe's two ends."""

    def __init__(self, sock: socket.socket, config) -> None:
        self.sock = sock
        self.config = config
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.session = None
        self.cores = None  # the CorePlan the experiment's thread was pinned with
        self._write_lock = threading.Lock()  # held while a frame goes down the pipe
        self._count_lock = threading.Lock()  # held for a counter update only: never blocks a frame
        self._unwritten = 0  # messages queued and not yet written

    # --- writing -------------------------------------------------------------------------
    def send(self, message: tuple | None) -> None:
        """Queue a message for the sender thread (any thread; the frame loop only ever does this).

        ``None`` tells the sender to finish after what is queued before it.
        """
        with self._count_lock:
            self._unwritten += 1
            self.outbox.put(message)

    def send_now(self, message: tuple) -> None:
        """Write a reply from the receiver thread itself when nothing is queued before it.

        Saves the hand-over to the sender thread (a thread wake-up, tens to
        hundreds of µs) on the command path, without ever overtaking an event
        published earlier: under the write lock, nothing queued means nothing
        unwritten. The host reads whatever it is sent without ever waiting on
        its own writes, so this write cannot deadlock with it.
        """
        with self._write_lock:
            with self._count_lock:
                if self._unwritten:
                    self._unwritten += 1
                    self.outbox.put(message)
                    return
            try:
                self.sock.sendall(pipe.encode(message))
            except OSError:
                pass

    def sender_loop(self) -> None:
        """Write queued messages; a burst (many events in one frame) goes as one write."""
        priority.lower_helper_thread(self.cores)
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
            queued = len(batch) + last
            if len(batch) > 1:
                batch = pipe.merge_rows(batch)
            with self._write_lock:
                try:
                    if len(batch) == 1:
                        self.sock.sendall(pipe.encode(batch[0]))
                    elif batch:
                        self.sock.sendall(pipe.encode((pipe.BATCH, batch)))
                except OSError:
                    return
                except Exception:  # noqa: BLE001 - a message that cannot be sent must not silence the worker
                    traceback.print_exc()
                finally:
                    with self._count_lock:
                        self._unwritten -= queued
            if last:
                return

    def reply(self, request_id: int, future: Future) -> None:
        """Send the reply for ``request_id`` once ``future`` is done (from whichever thread completes it)."""
        def done(f: Future) -> None:
            exc = f.exception()
            if exc is None:
                self.send((pipe.REPLY, request_id, True, f.result()))
            else:
                self.send((pipe.REPLY, request_id, False, error_payload(exc)))

        future.add_done_callback(done)

    # --- commands --------------------------------------------------------------------------
    def handle(self, request_id: int, method: str, kwargs: dict[str, Any]) -> None:
        """Carry out one host request (receiver thread); every outcome, failure included, gets a reply.

        Main-thread commands are queued and answered when done; the others run here at once.
        """
        session = self.session
        try:
            if method == "shutdown":
                if session._current_ticket() is not None:
                    try:
                        session.stop(outcome=kwargs.get("outcome", "stopped"))
                    except SessionError:
                        pass
                session.queue.stop()
                self.send((pipe.REPLY, request_id, True, None))
                return
            if method == "probe":  # when the main thread got to it (CLOCK_MONOTONIC: comparable across processes)
                self.reply(request_id, session.queue.submit(time.perf_counter))
                return
            if method in MAIN_THREAD:
                target = {"run_sync": session.run}.get(method) or getattr(session, method)
                self.reply(request_id, session.queue.submit(target, **kwargs))
                return
            if method not in IMMEDIATE:
                raise UnknownWorkerCommand(f"unknown worker command {method!r}")
            result = self.immediate(method, kwargs)
            if isinstance(result, Future):
                self.reply(request_id, result)
            else:
                self.send_now((pipe.REPLY, request_id, True, result))
        except BaseException as exc:  # noqa: BLE001 - report everything, keep serving
            self.send_now((pipe.REPLY, request_id, False, error_payload(exc)))

    def immediate(self, method: str, kwargs: dict[str, Any]) -> Any:
        """Run a command that needs neither the window nor imports, on the receiver thread.

        Returns its result or a Future of it; raises what the session raises.
        """
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
            # The host knows of the run from here on: an abort works even if setup hangs.
            return {"run_id": ticket.run_id, "key": ticket.key,
                    "data_dir": str(session.data_dir / "runs" / ticket.run_id)}
        return getattr(session, method)(**kwargs)

    def receiver_loop(self) -> None:
        """Read host requests until the pipe closes or is corrupt, then shut down (receiver thread).

        A lost host stops the run as ``aborted`` (its data are saved) and ends the session loop.
        """
        priority.lower_helper_thread(self.cores)
        decoder = pipe.FrameDecoder()
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            try:
                messages = decoder.feed(data) if data else None
            except pipe.PipeCorrupt:
                messages = None
            if messages is None:  # host gone: save the run's data, mark it aborted, leave
                if self.session is not None:
                    self.handle(-1, "shutdown", {"outcome": "aborted"})
                return
            for message in messages:
                try:
                    request_id, method, kwargs = message
                except (TypeError, ValueError):
                    continue
                self.handle(request_id, method, kwargs or {})


def read_config(sock: socket.socket):
    """The first message on the pipe: the worker's configuration."""
    decoder = pipe.FrameDecoder()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise SystemExit("the host closed the pipe before sending the configuration")
        messages = decoder.feed(data)
        if messages:
            return messages[0]


def child_main(sock: socket.socket, config) -> None:
    """Entry point of the worker process: the Session lives on this main thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host decides when we stop
    sys.setswitchinterval(config.switch_interval)  # control threads get the GIL promptly
    child = WorkerChild(sock, config)
    child.cores = priority.CorePlan.from_dict(config.cores) or priority.plan_cores()
    priority.raise_experiment_thread(config.priority, child.cores)  # before the window: GL threads follow it
    sender = threading.Thread(target=child.sender_loop, name="worker-sender", daemon=True)
    sender.start()
    try:
        from .display import ensure_display

        ensure_display(config.headless)
        from .events import Publisher
        from .plugins import PluginHost
        from .session import Session

        publisher = Publisher()
        publisher.subscribe(lambda event: child.send((pipe.EVENT, event)))
        child.session = Session(
            config.root, data_dir=config.data_dir, window=config.window or None,
            params=config.params, rest_message=config.rest_message, publisher=publisher,
            capture_output=True, plugins=PluginHost.load(config.plugins, publisher.publish), clock=config.clock,
        )
    except BaseException as exc:  # noqa: BLE001
        child.send((pipe.FAILED, {**error_payload(exc), "traceback": traceback.format_exc()}))
        child.send(None)
        sender.join(5)
        return
    child.send((pipe.READY, {"pid": os.getpid(), "experiments": child.session.list_experiments(),
                             "window": child.session.windows.describe()}))
    receiver = threading.Thread(target=child.receiver_loop, name="worker-receiver", daemon=True)
    receiver.start()
    try:
        child.session.serve_forever()
    finally:
        child.session.close()
        child.send(None)
        sender.join(5)
        priority.restore_session_group()


if __name__ == "__main__":
    _sock = socket.socket(fileno=int(sys.argv[1]))
    _sock.setblocking(True)  # PsychoPy's socket.setdefaulttimeout() must not make it non-blocking
    child_main(_sock, read_config(_sock))
