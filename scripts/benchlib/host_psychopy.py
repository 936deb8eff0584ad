"""Subprocess: PsychoPy's own stack, set up the way ``python -m psychopy.session --host`` does.

One process holds everything, as in PsychoPy: ``psychopy.liaison.WebSocketServer``
on a thread with its own event loop, and a ``psychopy.session.Session`` whose
``SessionQueue`` (``Session.start()``) runs on the main thread, which owns the
window. Clients then call ``{"object": ..., "method": ..., "args": [...],
"messageId": ...}``; the liaison runs the method on its own thread and answers
``{"result": ..., "messageId": ...}``. Methods called with ``blocking=False``
off the main thread (``runExperiment``) and anything given to
``SessionQueue.queueTask`` run on the main thread when its polling loop
(``time.sleep(0.1)`` per turn) gets to them; their results are broadcast to
every client.

Deviations from ``psychopy.session.__main__``, each because it cannot work otherwise:

- ``WebSocketServer.start()`` calls ``loop.add_signal_handler(SIGINT, ...)``,
  which raises ``RuntimeError`` off the main thread on Linux, so the thread
  ``psychopy.session.__main__`` starts dies at once. We run the same
  ``WebSocketServer.run()`` coroutine on our own loop with that one call made a
  no-op.
- The ``Session`` is created here on the main thread (as ``init`` over the
  liaison would, but a window made on the liaison thread would belong to the
  wrong thread) and registered with ``registerMethods`` under ``"session"``,
  exactly what a client's ``init`` + ``registerMethods`` calls produce.
- ``Session(win=<dict of Window kwargs>)``, as documented, raises ``TypeError``
  (it tests ``win in self.experiments`` with the dict); we make the window from
  the same kwargs and pass it in.
- ``Session.start()`` returns at once on a fresh queue (``SessionQueue()``
  starts with ``_alive = True`` and ``start()`` only runs it when not alive),
  so, like ``psychopy.session.__main__``, we call ``connectSession`` and
  ``SessionQueue.start()`` ourselves.
- A ``bench`` object (``BenchProbe``) is registered too, so the bench can read
  what the experiments recorded in this process (``RECORD``) after a run.

Logging is left as shipped: the liaison logs every message sent and received to
the session log file (flushed per message) and, at DEBUG, to stderr (which the
bench sends to a file).

Protocol with the bench: prints ``BENCH-READY {json}`` on stdout when serving;
a line on stdin (or EOF) stops the SessionQueue and ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_liaison(server, host: str, port: int) -> None:
    """``WebSocketServer.start()`` minus the SIGINT handler that fails off the main thread."""
    server.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(server.loop)
    server.loop.add_signal_handler = lambda *args, **kwargs: None
    server.loop.run_until_complete(server.run(host, port))


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"PsychoPy liaison did not listen on port {port} within {timeout} s")


class BenchProbe:
    """Read-outs for the bench, called over the liaison (they run on its thread)."""

    def __init__(self, session) -> None:
        self._session = session

    def record(self, key):
        """The ``RECORD`` global of experiment ``key`` (what its last run observed)."""
        return json.loads(json.dumps(getattr(self._session.experiments[key], "RECORD", {}), default=str))

    def pausedCount(self, key):
        """How many times the running ``key`` has observed PAUSED (cheap, for polling)."""
        return len(getattr(self._session.experiments[key], "RECORD", {}).get("paused_at", []))

    def logBytes(self):
        """Bytes in the session's log files (the liaison logs every message there)."""
        return sum(p.stat().st_size for p in Path(self._session.dataDir).glob("*.log"))

    def info(self):
        return {"pid": os.getpid(), "switchinterval": sys.getswitchinterval(),
                "experiments": sorted(self._session.experiments)}


def watch_stdin(queue) -> None:
    """Stop the SessionQueue when the bench says so or goes away; force the exit if it hangs."""
    sys.stdin.readline()
    queue.stop()
    time.sleep(20)
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--window", required=True, help="JSON kwargs for psychopy.visual.Window")
    args = parser.parse_args()

    from session.display import ensure_display

    ensure_display(None)
    from psychopy import liaison
    from psychopy import session as ps
    from psychopy.hardware.manager import DeviceManager

    from benchlib.experiments import FOLDER

    port = free_port()
    server = liaison.WebSocketServer()
    server.registerClass(DeviceManager, "DeviceManager")  # as psychopy.session.__main__
    server.registerClass(ps.Session, "session")
    server.registerMethods(ps._queue, "SessionQueue")
    threading.Thread(target=serve_liaison, args=(server, "127.0.0.1", port), name="liaison",
                     daemon=True).start()
    wait_port(port)

    from psychopy import visual

    # Session(win=<dict>), as documented, fails (``win in self.experiments``: unhashable dict).
    win = visual.Window(**json.loads(args.window))
    session = ps.Session(root=args.root, dataDir=args.data, win=win, liaison=server, restMsg="Rest")
    for path in sorted((Path(args.root) / FOLDER).glob("*_bench.py")):
        session.addExperiment(str(path), key=path.stem)
    server.registerMethods(session, "session")
    server.registerMethods(BenchProbe(session), "bench")
    threading.Thread(target=watch_stdin, args=(ps._queue,), name="stdin-watch", daemon=True).start()
    info = {"port": port, "pid": os.getpid(), "url": f"ws://127.0.0.1:{port}/",
            "switchinterval": sys.getswitchinterval(), "experiments": sorted(session.experiments)}
    sys.stdout.write("\nBENCH-READY " + json.dumps(info) + "\n")
    sys.stdout.flush()
    # Session.start() would return at once: SessionQueue() starts with _alive=True and start()
    # only runs the queue when it is not alive. Do what psychopy.session.__main__ does instead.
    ps._queue.connectSession(session)
    ps._queue.start()  # on the main thread, until SessionQueue.stop()
    session.close()


if __name__ == "__main__":
    main()
