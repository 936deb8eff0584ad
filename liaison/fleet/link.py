"""One booth link: the fleet's client connection to one booth, resumed from the store.

The link is an ordinary :class:`liaison.client.AsyncClient`. It asks the
booth for every event after the last one the store holds for that booth's
session (``since``), so neither a dropped connection, a restarted booth nor a
restarted fleet service loses or repeats anything: what was stored is the
cursor, and the store ignores what it already has. When the store's backlog
is full the link lets go of the booth and comes back, from the last event it
queued, once the store has caught up — the booth keeps everything in its
journal meanwhile, so memory here stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..client import AsyncClient, LiaisonError, Unauthorized
from .config import BoothConfig
from .model import FleetModel
from .store import Ingest
from .writer import StoreWriter

log = logging.getLogger("liaison.fleet")
HEARTBEAT = 5.0  # s between pings (and trial queries while running)
TRIALS_LOOKAHEAD = 10_000
FAIR_SHARE = 256  # events handled before letting other tasks run
COMMAND_TIMEOUT = 60.0  # s: a run's start loads the experiment first


class FleetClient(AsyncClient):
    """An AsyncClient that keeps no per-run history of events.

    The plain client remembers every event of every run (for ``AsyncRun``); a
    fleet follows booths for weeks, so it hands each event on and forgets it:
    memory stays bounded however many runs go by.
    """

    def _on_event(self, event) -> None:
        # The protocol core has already dropped events seen before (the replay overlap after a reconnect).
        if self._backlog is not None:
            self._backlog.append(event)
        for queue in self._queues:
            queue.put_nowait(event)


class Resync(Exception):
    """Start the link over (another session at the booth's URL, or the store must catch up)."""


class BoothLink:
    """Follows one booth until :meth:`stop`; never raises out of :meth:`run`."""

    def __init__(self, booth: BoothConfig, model: FleetModel, writer: StoreWriter) -> None:
        self.booth = booth
        self.name = booth.name
        self.model = model
        self.writer = writer
        self.client: FleetClient | None = None
        self.session_id: str | None = None
        self.queued_seq: int | None = None  # last event handed to the writer, this session
        self._snapshot_seq = 0
        self._welcomed: dict | None = None  # the welcome the model last took a snapshot from
        self._stopped = False
        self._task: asyncio.Task | None = None
        self._trial_total: tuple[str, int | None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"booth-{self.name}")
        return self._task

    async def stop(self) -> None:
        self._stopped = True
        if self.client is not None:
            await self.client.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        delay = 0.2
        while not self._stopped:
            began = time.monotonic()
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Resync:
                delay = 0.05
            except Unauthorized as exc:
                self.model.contact(self.name, "no contact", f"refused: {exc.message}")
                self.model.alert(self.name, "refused", f"the booth refused the fleet's token: {exc.message}")
                delay = 30.0  # a wrong token will not fix itself quickly; do not hammer the booth
            except (LiaisonError, OSError) as exc:
                self.model.contact(self.name, "no contact", getattr(exc, "message", None) or str(exc))
            except Exception as exc:  # noqa: BLE001 - a link never dies; it says why and retries
                log.exception("booth %s: link failed", self.name)
                self.model.contact(self.name, "no contact", f"internal error: {exc}")
            finally:
                client, self.client = self.client, None
                if client is not None:
                    await client.close()
            if self._stopped:
                return
            if time.monotonic() - began > 10:
                delay = 0.2  # it was up for a while: try again soon
            await asyncio.sleep(delay)
            delay = min(max(delay, 0.2) * 2, 5.0)

    # --- following a booth ----------------------------------------------------------------------
    async def _since(self, session_id: str | None) -> int | None:
        """Where to resume for ``session_id`` (None: the booth's latest session in the store)."""
        if session_id is not None and session_id == self.session_id and self.queued_seq is not None:
            return self.queued_seq
        if session_id is None:
            latest = await self.writer.call(self.writer.store.latest_session, self.name)
            if latest is None:
                return 0
            self.session_id, self.queued_seq = latest
            return latest[1]
        cursors = await self.writer.call(self.writer.store.cursors, self.name)
        return cursors.get(session_id, 0)

    async def _follow(self) -> None:
        if self.writer.full:
            await self.writer.drained()
        since = await self._since(self.session_id)
        client = FleetClient(self.booth.url, self.booth.token, role=self.booth.role, name="liaison-fleet",
                             since=since, reconnect=True, reconnect_for=3600.0, timeout=10.0,
                             fingerprint=self.booth.fingerprint, ca_file=self.booth.ca_file)
        self.client = client
        await client.connect()
        session_id = client.hello.get("session_id")
        if session_id != self.session_id:
            # Another session than the one resumed (first contact, or a new data folder at this URL):
            # ask again from that session's own cursor.
            right = await self._since(session_id)
            self.session_id, self.queued_seq = session_id, right
            if right != since:
                raise Resync()
        self.queued_seq = since
        self._welcome(client)
        heart = asyncio.get_running_loop().create_task(self._heartbeat(client))
        try:
            await self._consume(client)
        finally:
            heart.cancel()

    def _welcome(self, client: AsyncClient) -> None:
        welcome = client.welcome or {}
        self._snapshot_seq = int(welcome.get("last_seq") or 0)
        self._welcomed = welcome
        self.model.snapshot(self.name, welcome.get("state") or {}, self.session_id)
        self.model.contact(self.name, "connected")

    async def _consume(self, client: AsyncClient) -> None:
        writer, name, model = self.writer, self.name, self.model
        handled = 0
        async for event in client.events():
            handled += 1
            if handled % FAIR_SHARE == 0:
                # A queue that is never empty (a long replay) would never let go of the loop:
                # give the other booths, the pings and the dashboards their turn.
                await asyncio.sleep(0)
            if client.welcome is not self._welcomed:  # the client reconnected by itself
                if (client.hello or {}).get("session_id") != self.session_id:
                    raise Resync()
                self._welcome(client)
            if event.event == "gap":
                model.alert(name, "gap", f"the booth no longer has events {event.data.get('from_seq')}.."
                                         f"{event.data.get('to_seq')}: they are missing from the store")
                continue
            writer.put(Ingest(name, self.session_id, event.seq, event.event, event.time, event.data))
            self.queued_seq = event.seq
            if event.seq > self._snapshot_seq:
                model.event(name, event.event, event.seq, event.time, event.data)
            if writer.full:
                log.warning("booth %s: the store is behind (%d queued); pausing this booth's feed",
                            name, writer.backlog)
                raise Resync()
        if not self._stopped:
            raise LiaisonError("connection to the booth lost", code="connection_lost")

    async def _heartbeat(self, client: AsyncClient) -> None:
        """Ping (last contact) and, while a run goes on, ask which trial it is on."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await client.ping()
                self.model.contact(self.name, "connected")
            except (LiaisonError, asyncio.TimeoutError, TimeoutError) as exc:
                self.model.contact(self.name, "no contact", getattr(exc, "message", None) or "no answer to a ping")
                continue
            tile = self.model.tiles[self.name]
            if tile.status in ("running", "paused") and tile.run_id:
                await self._ask_trials(client, tile.run_id)

    async def _ask_trials(self, client: AsyncClient, run_id: str) -> None:
        want_total = self._trial_total is None or self._trial_total[0] != run_id
        try:
            result = await client.trials(n=TRIALS_LOOKAHEAD if want_total else 1, start=0)
        except (LiaisonError, asyncio.TimeoutError, TimeoutError):
            return  # informational only: the loop may not exist yet
        current = (result or {}).get("current") or {}
        if not isinstance(current.get("thisN"), int):
            return
        n = current["thisN"] + 1
        if want_total:
            future = len(result.get("future") or [])
            self._trial_total = (run_id, n + future if future < TRIALS_LOOKAHEAD else None)
        self.model.trials(self.name, run_id, n, self._trial_total[1])

    # --- commands from the fleet dashboard --------------------------------------------------------
    async def command(self, cmd: str, **args):
        """Send one command to the booth; raises LiaisonError (typed) when it cannot."""
        client = self.client
        if client is None or client.welcome is None:
            raise LiaisonError(f"booth {self.name} is not connected", code="connection_lost")
        if self.booth.role != "controller" and cmd not in ("ping", "state", "trials"):
            raise LiaisonError(f"the fleet only observes booth {self.name} (role = \"observer\")",
                               code="forbidden")
        try:
            return await client.request(cmd, timeout=COMMAND_TIMEOUT, **args)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise LiaisonError(f"booth {self.name} did not answer {cmd} within {COMMAND_TIMEOUT:g} s",
                               code="timeout") from exc
