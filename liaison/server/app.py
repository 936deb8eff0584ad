"""The liaison server: assembles the parts and runs them until stopped.

The session (and PsychoPy) live in a worker process (:mod:`session.worker`);
this process only speaks WebSocket and HTTP, so the experiment's main thread
never waits on a client. The parts, each given only what it needs:

- :class:`~liaison.store.journal.Journal`: every event and command on disk;
  on start the server resumes its numbering, run history, session params and
  added experiments from it, and recovers runs a crash left open;
- :class:`~liaison.server.hub.Hub`: journals and fans out events;
- :class:`~liaison.server.link.SessionLink`: commands to the worker, which
  its host restarts after a crash;
- :class:`~liaison.server.dispatch.Dispatcher`: requests into work;
- :class:`~liaison.server.connection.ClientConnection`: one per client;
- :class:`~liaison.server.http.HttpFront`: the dashboard, downloads, and the
  Host/Origin checks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import threading

from websockets.asyncio.server import serve

from session import priority
from session.display import ensure_display, xvfb_pid
from session.events import Publisher, StatusChanged
from session.worker import WorkerConfig

from .. import __version__
from ..plugins.base import SessionInfo
from ..plans.runner import PlanService
from ..plugins.host import ServerPlugins
from ..protocol import CloseCode, Hello, dumps
from ..store.datalock import DataDirLock, end_leftovers
from ..store.journal import Journal
from ..store.recovery import recover
from ..resources import web_dir
from ..store.runs import RunHistory
from .auth import Credentials
from .clients import ClientRegistry
from .commandlog import CommandLog
from .config import ServerConfig
from .connection import ClientConnection, Limits
from .dispatch import Dispatcher
from .guards import HostCheck
from .http import HttpFront
from .hub import Hub
from .link import SessionLink
from .tls import plan_tls
from .upload import DEPLOY_PATH, DeployChannel

log = logging.getLogger("liaison.server")
STORAGE_PROBE = 2.0  # seconds between write attempts while the journal cannot be written


class LiaisonServer:
    """One server per data folder; :meth:`serve` runs it on the current event loop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        if config.web_dir is None:
            config.web_dir = web_dir()
        self.version = __version__
        # Plugins first: a bad --plugin fails before anything is locked or opened (PluginLoadError).
        self.plugins = ServerPlugins.from_specs(config.plugins, lambda event: self.publisher.publish(event))
        self.lock = DataDirLock(config.data_dir).acquire()  # DataDirBusy if another server has it
        try:  # the generated certificate lives in the data folder, so only under its lock
            self.tls = plan_tls(config.host, config.data_dir, tls=config.tls, cert=config.tls_cert,
                                key=config.tls_key, accept_plaintext=config.accept_plaintext)
            self.ssl_context = self.tls.context()
        except BaseException:
            self.lock.release()
            raise
        self.journal = Journal.in_dir(config.data_dir, durable=config.durable, background_checkpoints=True)
        self.session_id = self.journal.get_state("session_id")
        if self.session_id is None:  # one id per data folder, so clients' `since` survives restarts
            self.session_id = secrets.token_hex(8)
            self.journal.set_state("session_id", self.session_id)
        self.publisher = Publisher(first_seq=self.journal.last_seq + 1)
        self.runs = RunHistory(self.journal)
        self.clients = ClientRegistry()
        self.credentials = Credentials(config.token, config.observer_token, config.no_auth)
        self.recovery = None
        self.hub: Hub | None = None
        self.link: SessionLink | None = None
        self.commands: CommandLog | None = None
        self.dispatcher: Dispatcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._connections: set[ClientConnection] = set()
        self._stopping = False  # set when the server begins to shut down (plans settle after a restart)

    # --- serving ----------------------------------------------------------------------------
    async def serve(self, install_signals: bool = False) -> None:
        """Start the worker, then serve until :meth:`request_stop` or a signal."""
        try:
            await self._serve(install_signals)
        finally:  # also when start-up failed (port taken, no display...): leave nothing behind
            if self.link is not None:
                await self.link.shutdown()
            if self.hub is not None:
                self.hub.drain()  # journal what is still queued
            if self.commands is not None:
                self.commands.flush()
            await asyncio.get_running_loop().run_in_executor(None, self.plugins.close)
            self.journal.close()
            self.lock.release()

    async def _serve(self, install_signals: bool) -> None:
        config = self.config
        loop = self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.hub = Hub(loop, config.replay_size, journal=self.journal, replay_bytes=config.replay_bytes)
        self.hub.listeners.append(self.plugins.on_event)
        self.publisher.subscribe(self.hub.push)
        if self.journal.damage:
            log.error("journal: %s", self.journal.damage.describe())
        self.recovery = await loop.run_in_executor(
            None, lambda: recover(self.journal, self.publisher.publish, wait=config.recovery_wait))
        for run in self.recovery.runs:
            log.warning("recovered interrupted run %s: %d rows rebuilt into %s", run["run_id"], run["rows"], run["csv"])
        for leftover in end_leftovers(self.lock.previous):  # after recovery let orphans finish saving
            log.warning("ended the %s a previous server left running", leftover)
        params = {**self.journal.get_state("params", {}), **config.params}
        # The server owns the virtual display: workers inherit it, so a killed worker leaves none behind.
        await loop.run_in_executor(None, ensure_display, config.headless)
        self.lock.note(xvfb_pid=xvfb_pid())
        cores = priority.machine_plan() if config.priority == "realtime" else None  # a core of its own
        problems = priority.keep_off_experiment_core(cores)  # realtime: this process (loop, journal writer...)
        if xvfb_pid():  # each flip waits for it: as urgent as the experiment (realtime: off its core)
            problems += priority.raise_display_server(xvfb_pid(), cores, config.priority)
        for problem in problems:
            log.warning("priority: %s", problem)
        self.link = SessionLink(
            WorkerConfig(root=str(config.root), data_dir=str(config.data_dir), window=config.window, params=params,
                         headless=None,  # the display is ours, set up above; the worker inherits it
                         plugins=self.plugins.engine_specs(), clock=config.clock,
                         priority=config.priority, cores=cores.to_dict() if cores else None),
            self.journal, self.publisher, loop)
        self.hub.listeners.append(self.link.on_event)
        self.link.on_worker_start.append(lambda host: self.lock.note(worker_pid=host.process.pid))
        self.hub.on_storage_failure.append(self._storage_failed)
        self.commands = CommandLog(self.journal, loop)
        self.deploy = DeployChannel(config.root, config.data_dir, self.credentials, self.commands, self.link,
                                    config.auth_timeout, config.max_upload_bytes)
        self.dispatcher = Dispatcher(self.link, self.hub, self.runs, self.clients,
                                     {"version": self.version, "session_id": self.session_id},
                                     max_reply_bytes=config.max_reply_bytes)
        self.plans = PlanService(self.journal, self.hub, self.publisher, self.link, lambda: self._stopping)
        self.dispatcher.plans = self.plans  # session plans: a journalled queue of runs
        await self.link.start(timeout=180)
        self.plans.attach()  # resumes a plan a crash or restart interrupted
        gc.collect()
        gc.freeze()  # the server's long-lived objects are never scanned again: shorter pauses on the loop
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop)
        http = HttpFront(credentials=self.credentials, hosts=HostCheck(config.host, config.allowed_hosts),
                         allowed_origins=config.allowed_origins, runs=self.runs, web_dir=config.web_dir)
        async with serve(
            self._handler, config.host, config.port,
            process_request=http,
            max_size=max(4 * config.max_message_bytes, 1 << 16),
            max_queue=64,
            ping_interval=config.ping_interval, ping_timeout=config.ping_interval,
            compression=None,
            server_header=f"liaison/{self.version}",
            ssl=self.ssl_context,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.plugins.start(SessionInfo(root=str(config.root), data_dir=str(config.data_dir), version=self.version,
                                           session_id=self.session_id, host=config.host, port=self.port))
            self.ready.set()
            log.info("serving %s on %s://%s:%s/ (auth: %s)", config.root, "wss" if self.tls.enabled else "ws",
                     config.host, self.port, self.credentials.method)
            await self._stop.wait()
            await self._shutdown(server)

    async def _handler(self, ws) -> None:
        if ws.request.path.split("?", 1)[0] == DEPLOY_PATH:  # experiment uploads have their own socket
            return await self.deploy.serve(ws)
        config = self.config
        hello = dumps(Hello(protocol=1, server=f"liaison {self.version}", session_id=self.session_id,
                            auth=self.credentials.method, max_message_bytes=config.max_message_bytes))
        limits = Limits(config.max_message_bytes, config.auth_timeout, config.client_queue_limit,
                        config.client_buffer_bytes, config.max_in_flight)
        conn = ClientConnection(ws, credentials=self.credentials, hub=self.hub, dispatcher=self.dispatcher,
                                commands=self.commands, clients=self.clients, hello=hello, limits=limits)
        self._connections.add(conn)
        try:
            await conn.serve()
        finally:
            self._connections.discard(conn)

    def request_stop(self) -> None:
        """Stop serving (any thread): the run is stopped and saved, clients are told."""
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    async def _shutdown(self, server) -> None:
        """Stop the run (its data are saved), close the worker, say goodbye (1001)."""
        log.info("shutting down: stopping any run and saving its data")
        self._stopping = True
        # Clients learn why the worker is going away (not "worker exited, restarting").
        self.publisher.publish(StatusChanged(status="shutting_down"))
        await self.link.shutdown()
        self.hub.drain()  # the last events (run end, "shutting_down") reach the outboxes
        await asyncio.sleep(0.05)  # ... and the clients
        closing = [conn.close(CloseCode.GOING_AWAY, "server shutting down") for conn in list(self._connections)]
        if closing:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 10)

    # --- the disk is full -----------------------------------------------------------------------
    def _storage_failed(self, reason: str) -> None:
        """Stop the run (PsychoPy may still save its own files), then probe until writes work again."""
        log.error("stopping any run: the journal cannot be written (%s)", reason)

        async def stop_and_probe() -> None:
            try:
                await self.link.call("stop", 10)
            except Exception:  # noqa: BLE001 - nothing was running, or the worker is gone
                pass
            while not self.hub.probe_storage():
                await asyncio.sleep(STORAGE_PROBE)

        self.loop.create_task(stop_and_probe())


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
        """The server's WebSocket URL with the port it bound (IPv6 hosts bracketed); only valid once started."""
        host = self.server.config.host
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self.server.tls.enabled else 'ws'}://{host}:{self.server.port}/"
