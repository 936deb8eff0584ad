"""The liaison server: supervises the session worker and serves clients.

The session (and PsychoPy) live in a worker process; this process only
speaks WebSocket and HTTP, so the experiment's main thread never waits on a
client. If the worker dies it is restarted, its run's journalled rows are
rebuilt into a CSV, and clients are told. The journal (``DATA/journal.sqlite``)
holds every event and command; on start the server resumes its numbering,
run history, session params and added experiments from it, and recovers runs
a crash left open.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import serve

from session.datalock import DataDirLock
from session.events import Event, Publisher, RunRecovered, StatusChanged
from session.journal import Journal, command_row
from session.recovery import rebuild_run, recover
from session.worker import WorkerConfig, WorkerHost

from .. import __version__
from ..plans.runner import PlanService
from ..protocol import OBSERVER_COMMANDS, CloseCode
from .config import ServerConfig
from .connection import ClientConnection
from .dispatch import Dispatcher, worker_reply
from .http import HttpFront
from .hub import Hub
from .runs import RunHistory

log = logging.getLogger("liaison.server")
READS_FLUSH = 0.05  # seconds: how long read-only commands wait to be journalled together
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"


class LiaisonServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        if config.web_dir is None:
            config.web_dir = DEFAULT_WEB_DIR
        self.version = __version__
        self.lock = DataDirLock(config.data_dir).acquire()  # DataDirBusy if another server has it
        self.journal = Journal.in_dir(config.data_dir, durable=config.durable, background_checkpoints=True)
        self.session_id = self.journal.get_state("session_id")
        if self.session_id is None:  # one id per data folder, so clients' `since` survives restarts
            self.session_id = secrets.token_hex(8)
            self.journal.set_state("session_id", self.session_id)
        self.publisher = Publisher(first_seq=self.journal.last_seq + 1)
        self.runs = RunHistory(self.journal)
        self.recovery = None
        self._command_rows: list[tuple] = []  # reads, journalled together at the end of the loop turn
        self.dispatcher = Dispatcher(self)
        self.plans = PlanService(self)  # session plans: a journalled queue of runs
        self.connections: set[ClientConnection] = set()
        self.hub: Hub | None = None
        self.host: WorkerHost | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._shutting_down = False
        self._restarting = threading.Lock()

    # --- pieces the connections use -------------------------------------------------
    async def snapshot(self) -> dict[str, Any]:
        try:
            state = await worker_reply(self.host, "state", 10)
        except Exception as exc:  # noqa: BLE001 - a snapshot without the worker still helps
            state = {"status": "unavailable", "error": str(exc)}
        state["last_seq"] = self.hub.last_seq
        state["runs"] = self.runs.list(50)
        state["server"] = {"version": self.version, "session_id": self.session_id,
                           "worker_restarts": self.host.restarts, "clients": len(self.connections)}
        return state

    def journal_command(self, conn: ClientConnection, cmd: str, args: dict[str, Any], request_id: Any = None) -> None:
        """Record who asked for what (loop thread).

        A command that changes anything is on disk before it is carried out
        (with any reads queued before it). Reads change nothing, so they are
        journalled together every ``READS_FLUSH`` seconds: a transaction per
        ping would double its round trip.
        """
        self._command_rows.append(command_row(client_id=conn.client_id, client_name=conn.name, role=conn.role,
                                              cmd=cmd, args=args, request_id=request_id))
        if cmd not in OBSERVER_COMMANDS:
            self._flush_commands()
            log.info("client %s (%s) -> %s", conn.client_id, conn.role, cmd)
        elif len(self._command_rows) == 1:
            self.loop.call_later(READS_FLUSH, self._flush_commands)

    def _flush_commands(self) -> None:
        rows, self._command_rows = self._command_rows, []
        if not rows:
            return
        try:
            self.journal.record_commands(rows)
        except Exception:  # noqa: BLE001 - the commands still run; the failure is loud
            log.exception("could not journal %d commands", len(rows))

    # --- state that outlives the worker and the server ----------------------------------
    def remember_experiment(self, path: str, key: str | None) -> None:
        added = [e for e in self.journal.get_state("added_experiments", []) if e["path"] != path]
        self.journal.set_state("added_experiments", added + [{"path": path, "key": key}])

    def _on_worker_start(self, host: WorkerHost) -> None:
        """Give every fresh worker the experiments clients added to the ones before it."""
        for entry in self.journal.get_state("added_experiments", []):
            try:
                host.request("add_experiment", timeout=120, path=entry["path"], key=entry["key"])
            except Exception as exc:  # noqa: BLE001 - a file may have gone since
                log.warning("could not re-add experiment %s: %s", entry["path"], exc)

    def _on_event(self, event: Event) -> None:
        """Hub listener (loop thread, after the event is journalled)."""
        if event.type == "exp_info_changed" and event.run_id is None:
            self.journal.set_state("params", event.exp_info)
        elif event.type in ("run_finished", "run_failed") and self.host is not None \
                and event.run_id in self.host.lost_runs:
            reason = self.host.lost_runs.pop(event.run_id)
            self.loop.run_in_executor(None, self._rebuild_lost_run, event.run_id, reason)

    def _rebuild_lost_run(self, run_id: str, reason: str) -> None:
        """The worker died under this run: its journalled rows become its CSV."""
        run = self.journal.run(run_id)
        if run is None:
            return
        try:
            done = rebuild_run(self.journal, run, reason=reason)
        except Exception:  # noqa: BLE001
            log.exception("could not rebuild the data of run %s", run_id)
            return
        log.warning("run %s: rebuilt %d rows from the journal into %s", run_id, done["rows"], done["csv"])
        self.publisher.publish(RunRecovered(run_id=run_id, key=run["key"], rows=done["rows"],
                                            data_files=done["data_files"], reason=reason))

    # --- worker supervision ------------------------------------------------------------
    def _worker_exited(self, code: int | None) -> None:
        if self._shutting_down or self.host is None or self.host._killing:
            return
        log.error("session worker exited unexpectedly (code %s); restarting", code)
        self.host.restarting = True  # commands arriving meanwhile wait for the new worker
        threading.Thread(target=self._restart_worker, daemon=True).start()

    def _restart_worker(self) -> None:
        with self._restarting:
            if self._shutting_down or self.host.alive:
                self.host.restarting = False
                return
            try:
                self.host.restart(timeout=120)
                log.info("session worker restarted")
            except Exception:  # noqa: BLE001
                log.exception("could not restart the session worker")
                self.publisher.publish(StatusChanged(status="unavailable"))

    # --- serving ----------------------------------------------------------------------------
    async def _handler(self, ws) -> None:
        conn = ClientConnection(self, ws)
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    async def serve(self, install_signals: bool = False) -> None:
        """Start the worker, then serve until :meth:`request_stop` or a signal."""
        try:
            await self._serve(install_signals)
        finally:  # also when start-up failed (port taken, no display...): leave nothing behind
            self._shutting_down = True
            if self.host is not None:
                await asyncio.get_running_loop().run_in_executor(None, lambda: self.host.shutdown(timeout=60))
            if self.hub is not None:
                self.hub._drain()  # journal what is still queued
            self._flush_commands()
            self.journal.close()
            self.lock.release()

    async def _serve(self, install_signals: bool) -> None:
        config = self.config
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.hub = Hub(self.loop, config.replay_size, journal=self.journal, replay_bytes=config.replay_bytes)
        self.hub.listeners.append(self._on_event)
        self.publisher.subscribe(self.hub.push)
        if self.journal.damage:
            log.error("journal: %s", self.journal.damage.describe())
        self.recovery = await self.loop.run_in_executor(
            None, lambda: recover(self.journal, self.publisher.publish, wait=config.recovery_wait))
        for run in self.recovery.runs:
            log.warning("recovered interrupted run %s: %d rows rebuilt into %s", run["run_id"], run["rows"], run["csv"])
        params = {**self.journal.get_state("params", {}), **config.params}
        # The server owns the virtual display: workers inherit it, so a killed worker leaves none behind.
        from session.display import ensure_display

        await self.loop.run_in_executor(None, ensure_display, config.headless)
        self.host = WorkerHost(
            WorkerConfig(root=str(config.root), data_dir=str(config.data_dir), window=config.window, params=params,
                         headless=None),  # the display is ours, set up above; the worker inherits it
            publisher=self.publisher, on_exit=self._worker_exited, on_start=self._on_worker_start, loop=self.loop,
        )
        await self.loop.run_in_executor(None, lambda: self.host.start(timeout=180))
        self.plans.attach()  # resumes a plan a crash or restart interrupted
        gc.collect()
        gc.freeze()  # the server's long-lived objects are never scanned again: shorter pauses on the loop
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self.request_stop)
        async with serve(
            self._handler, config.host, config.port,
            process_request=HttpFront(self),
            max_size=max(4 * config.max_message_bytes, 1 << 16),
            max_queue=64,
            ping_interval=config.ping_interval, ping_timeout=config.ping_interval,
            compression=None,
            server_header=f"liaison/{self.version}",
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            log.info("serving %s on ws://%s:%s/ (auth: %s)", config.root, config.host, self.port,
                     config.auth_method)
            await self._stop.wait()
            await self._shutdown()

    def request_stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    async def _shutdown(self) -> None:
        """Stop the run (its data are saved), close the worker, say goodbye (1001)."""
        self._shutting_down = True
        log.info("shutting down: stopping any run and saving its data")
        await self.loop.run_in_executor(None, lambda: self.host.shutdown(timeout=60))
        await asyncio.sleep(0.05)  # let the last events reach the outboxes
        closing = [conn.close(CloseCode.GOING_AWAY, "server shutting down") for conn in list(self.connections)]
        if closing:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10)


class ServerThread:
    """Run a LiaisonServer in a background thread (tests, embedding)."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = LiaisonServer(config)
        self._thread = threading.Thread(target=self._run, name="liaison-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
            self.server.ready.set()

    def __enter__(self) -> LiaisonServer:
        self._thread.start()
        if not self.server.ready.wait(240) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self.server

    def __exit__(self, *exc_info) -> None:
        self.server.request_stop()
        self._thread.join(90)

    @property
    def url(self) -> str:
        host = self.server.config.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.server.port}/"


def wait_port(server: LiaisonServer, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while server.port is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.port
